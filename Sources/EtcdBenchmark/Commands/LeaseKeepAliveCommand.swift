import ArgumentParser
import EtcdAPI
import GRPCCore

/// `lease-keepalive`: each client grants one lease (TTL 100 s, untimed), then renews it once per
/// request with a fresh LeaseKeepAlive stream, as clientv3's `KeepAliveOnce` in etcd's benchmark.
struct LeaseKeepAliveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-keepalive",
        abstract: "Benchmark lease keepalive."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "TTL in seconds of the lease each client renews.")
    var ttl: Int64 = 100

    func run() async throws {
        let reports = try await Connections.with(global) { connections in
            let leases = try await grantLeases(connections)
            return await runLoad(
                operation: "lease-keepalive",
                classes: ["lease-keepalive"],
                options: global,
                connections: connections
            ) { clientIndex in
                LeaseKeepAliveWorker(
                    lease: Etcdserverpb_Lease.Client(wrapping: connections.client(for: clientIndex)),
                    metadata: connections.metadata,
                    leaseID: leases[clientIndex]
                )
            }
        }
        emit(reports.map { (heading: nil, report: $0) }, options: global)
    }

    /// One lease per client, granted concurrently before the clock starts.
    private func grantLeases(_ connections: Connections) async throws -> [Int64] {
        try await withThrowingTaskGroup(of: (Int, Int64).self) { group in
            for clientIndex in 0..<global.clients {
                group.addTask { [ttl] in
                    var request = Etcdserverpb_LeaseGrantRequest()
                    request.ttl = ttl
                    let client = Etcdserverpb_Lease.Client(wrapping: connections.client(for: clientIndex))
                    let response = try await client.leaseGrant(request, metadata: connections.metadata)
                    return (clientIndex, response.id)
                }
            }
            var leases = [Int64](repeating: 0, count: global.clients)
            for try await (clientIndex, leaseID) in group {
                leases[clientIndex] = leaseID
            }
            return leases
        }
    }
}

/// The error clientv3's KeepAliveOnce returns when the server answers with TTL ≤ 0.
struct LeaseNotFound: Error, CustomStringConvertible {
    var description: String { "etcdserver: requested lease not found" }
}

/// One client's renewals: one stream per request, one request and one response on it.
struct LeaseKeepAliveWorker: LoadWorker {
    let lease: Etcdserverpb_Lease.Client<Connections.Transport>
    let metadata: Metadata
    let request: Etcdserverpb_LeaseKeepAliveRequest

    init(lease: Etcdserverpb_Lease.Client<Connections.Transport>, metadata: Metadata, leaseID: Int64) {
        self.lease = lease
        self.metadata = metadata
        var request = Etcdserverpb_LeaseKeepAliveRequest()
        request.id = leaseID
        self.request = request
    }

    func prepare(_ index: Int) -> Int { 0 }

    func send() async throws {
        let request = request
        let ttl = try await lease.leaseKeepAlive(
            metadata: metadata,
            requestProducer: { writer in try await writer.write(request) },
            onResponse: { response in
                for try await message in response.messages {
                    return message.ttl
                }
                return Int64(0)
            }
        )
        guard ttl > 0 else { throw LeaseNotFound() }
    }
}
