import ArgumentParser
import EtcdAPI
import GRPCCore

/// `lease-keepalive`: each client grants one lease (TTL 100 s, untimed), then renews it once per
/// request with a fresh LeaseKeepAlive stream, as clientv3's `KeepAliveOnce` in etcd's benchmark.
/// With `--live-leases N`, it instead holds N leases under steady keepalives (see `LiveLeasesPlan`).
struct LeaseKeepAliveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-keepalive",
        abstract: "Benchmark lease keepalive."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "TTL in seconds of the lease each client renews (with --live-leases: of every lease; default 30).")
    var ttl: Int64?

    @Option(help: "Hold this many leases under keepalives instead (granted --clients at a time).")
    var liveLeases: Int = 0

    @Option(help: "With --live-leases: keepalive streams the leases are spread over (over --conns).")
    var streams: Int = 100

    @Option(help: "With --live-leases: seconds between two keepalives of one lease (default: TTL/3, as clientv3).")
    var renewInterval: Double?

    @Option(help: "With --live-leases: seconds to keep the leases alive.")
    var holdSeconds: Double = 60

    @Option(help: "With --live-leases: seconds to leave the granted leases idle before the keepalives start.")
    var idleSeconds: Double = 0

    @Option(help: "With --live-leases: seconds to wait for outstanding answers after the hold.")
    var drainTimeout: Double = 10

    func validate() throws {
        guard ttl.map({ $0 >= 1 }) ?? true else { throw ValidationError("--ttl must be at least 1") }
        guard liveLeases >= 0, streams >= 1 else {
            throw ValidationError("--live-leases must not be negative and --streams must be positive")
        }
        guard renewInterval.map({ $0 > 0 }) ?? true, holdSeconds > 0, idleSeconds >= 0, drainTimeout >= 0 else {
            throw ValidationError("--renew-interval and --hold-seconds must be positive, --idle-seconds and --drain-timeout not negative")
        }
    }

    func run() async throws {
        if liveLeases > 0 {
            let ttl = self.ttl ?? 30
            let plan = LiveLeasesPlan(
                leases: liveLeases,
                streams: min(streams, liveLeases),
                ttl: ttl,
                renewIntervalSeconds: renewInterval ?? Double(ttl) / 3,
                holdSeconds: holdSeconds,
                idleSeconds: idleSeconds,
                drainTimeoutSeconds: drainTimeout,
                idBase: LiveLeasesPlan.idBaseFromWallClock()
            )
            try await runLiveLeases(plan: plan, options: global)
            return
        }
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
                    request.ttl = ttl ?? 100
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
