import EtcdAPI
import EtcdCommon
import EtcdReplica
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

/// Sends the requests only the leader can answer to the leader, for a member that is not it:
/// lease keepalives and time-to-live (only the leader's lessor knows how long a lease has left)
/// and learner promotions (only the leader knows how far the learner's log has come). etcd
/// forwards these over its peer HTTP API; here they go to the leader's advertised client URL as
/// the same gRPC calls a client would make.
final class LeaderForwarder: Sendable {
    typealias Transport = HTTP2ClientTransport.Posix

    private let localMember: MemberID
    private let status: MemberStatusBoard
    private let replica: ReplicaHandle
    private let requestTimeout: Duration
    private let logger: Logger
    /// How the leader's `https://` client URL is dialed.
    private let security: ServerSecurity

    private struct State {
        /// One client per leader URL, with the task that runs its connections.
        var clients: [String: (client: GRPCClient<Transport>, task: Task<Void, Never>)] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    init(
        localMember: MemberID, status: MemberStatusBoard, replica: ReplicaHandle, requestTimeout: Duration, logger: Logger,
        security: ServerSecurity = .none
    ) {
        self.security = security
        self.localMember = localMember
        self.status = status
        self.replica = replica
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    /// Where the leader is, as seen from here.
    enum LeaderLocation {
        /// This member leads.
        case here
        /// Another member leads; calls go to it through this client.
        case remote(GRPCClient<Transport>)
    }

    /// The leader, or "etcdserver: no leader" when none is known (or it has no client URL that
    /// this member can reach).
    func leader() throws -> LeaderLocation {
        let leader = status.leader
        guard leader != 0 else { throw EtcdError.noLeader }
        if leader == localMember.rawValue { return .here }
        let urls = try replica.read { $0.membership.members[MemberID(leader)]?.clientURLs ?? [] }
        // Plaintext where the leader offers it, else TLS.
        let parsed = urls.compactMap { try? EndpointURL(parsing: $0) }
        guard let url = parsed.first(where: { $0.scheme == "http" }) ?? parsed.first(where: { $0.scheme == "https" }) else {
            throw EtcdError.noLeader
        }
        return .remote(try client(for: url))
    }

    private func client(for url: EndpointURL) throws -> GRPCClient<Transport> {
        let key = url.description
        let host = url.host == "localhost" ? "127.0.0.1" : url.host
        return try state.withLock { (state) throws -> GRPCClient<Transport> in
            if state.closed { throw EtcdError.stopped }
            if let existing = state.clients[key] { return existing.client }
            let target: any ResolvableTarget =
                host.contains(":") ? .ipv6(address: host, port: url.port) : .ipv4(address: host, port: url.port)
            let client = GRPCClient(
                transport: try .http2NIOPosix(target: target, transportSecurity: security.transportSecurity(for: url)))
            let logger = self.logger
            let task = Task {
                do {
                    try await client.runConnections()
                } catch {
                    logger.debug("connection to the leader ended", metadata: ["url": "\(key)", "error": "\(error)"])
                }
            }
            state.clients[key] = (client, task)
            return client
        }
    }

    private var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = requestTimeout
        return options
    }

    /// Renews `id` on the leader and returns the TTL it answers (0: gone).
    func keepAlive(_ id: Int64, on client: GRPCClient<Transport>) async throws -> Int64 {
        var request = Etcdserverpb_LeaseKeepAliveRequest()
        request.id = id
        return try await Etcdserverpb_Lease.Client(wrapping: client).leaseKeepAlive(
            metadata: Self.callerMetadata, options: callOptions,
            requestProducer: { [request] writer in try await writer.write(request) }
        ) { response in
            for try await answer in response.messages where answer.id == id { return answer.ttl }
            throw EtcdError.noLeader
        }
    }

    func timeToLive(
        _ request: Etcdserverpb_LeaseTimeToLiveRequest, on client: GRPCClient<Transport>
    ) async throws -> Etcdserverpb_LeaseTimeToLiveResponse {
        try await Etcdserverpb_Lease.Client(wrapping: client).leaseTimeToLive(
            request, metadata: Self.callerMetadata, options: callOptions)
    }

    func promote(
        _ request: Etcdserverpb_MemberPromoteRequest, on client: GRPCClient<Transport>
    ) async throws -> Etcdserverpb_MemberPromoteResponse {
        try await Etcdserverpb_Cluster.Client(wrapping: client).memberPromote(
            request, metadata: Self.callerMetadata, options: callOptions)
    }

    /// The caller's token, passed on so that the leader checks the same identity.
    private static var callerMetadata: Metadata {
        var metadata = Metadata()
        if let token = RequestCredentials.current.token { metadata.addString(token, forKey: "token") }
        return metadata
    }

    /// Closes every connection to a leader (at shutdown).
    func close() {
        let clients = state.withLock { state in
            state.closed = true
            defer { state.clients = [:] }
            return Array(state.clients.values)
        }
        for entry in clients { entry.client.beginGracefulShutdown() }
    }
}
