import EtcdAPI
import EtcdTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOHTTP2
import NIOPosix

/// The benchmark's gRPC connections: `--conns` clients, each with exactly one HTTP/2 connection,
/// spread round-robin over the endpoints, and the call metadata (auth token) every request carries.
struct Connections: Sendable {
    typealias Transport = HTTP2ClientTransport.Posix

    /// The `--conns` connections the clients share.
    let clients: [GRPCClient<Transport>]
    /// Connections of their own, for a side load that must not queue behind the measured one
    /// (watch-latency's puts, as etcd's benchmark opens one more connection for them).
    let extraClients: [GRPCClient<Transport>]
    let counters: HTTP2ConnectionCounters
    /// Where client tasks should run, with `--event-loop-executor`.
    var executor: EventLoopTaskExecutor?
    /// With `extraConnectionsOnOwnThread`, the thread that carries the extra connections, as an
    /// executor for the tasks that use them.
    var extraExecutor: EventLoopTaskExecutor?
    /// Sent with every request: the `token` from `--user`, or nothing.
    var metadata: Metadata = [:]

    /// How many connections the run needs; any opened beyond these replaced lost ones.
    var connectionCount: Int { clients.count + extraClients.count }

    /// The connection client number `index` uses, as etcd's benchmark assigns clients to
    /// connections.
    func client(for index: Int) -> GRPCClient<Transport> {
        clients[index % clients.count]
    }

    /// Opens the connections, authenticates if asked, runs `body`, and shuts everything down.
    ///
    /// With `extraConnectionsOnOwnThread`, the extra connections get an event loop thread of their
    /// own (see `extraExecutor`): watch-mixed's puts must not queue behind thousands of watch events
    /// per second in the same loop or task pool, or the put latency it reports is the tool's.
    static func with<Result: Sendable>(
        _ options: GlobalOptions,
        extraConnections: Int = 0,
        extraConnectionsOnOwnThread: Bool = false,
        _ body: (Connections) async throws -> Result
    ) async throws -> Result {
        guard extraConnectionsOnOwnThread, extraConnections > 0 else {
            return try await with(options, extraConnections: extraConnections, extraLoop: nil, body)
        }
        let extraLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let result = try await with(options, extraConnections: extraConnections, extraLoop: extraLoop, body)
            try await extraLoop.shutdownGracefully()
            return result
        } catch {
            try? await extraLoop.shutdownGracefully()
            throw error
        }
    }

    private static func with<Result: Sendable>(
        _ options: GlobalOptions,
        extraConnections: Int,
        extraLoop: MultiThreadedEventLoopGroup?,
        _ body: (Connections) async throws -> Result
    ) async throws -> Result {
        let counters = HTTP2ConnectionCounters()
        let endpoints = try options.parsedEndpoints()
        let security = try transportSecurity(options, endpoints: endpoints)
        let loopGroup: any EventLoopGroup
        let executor: EventLoopTaskExecutor?
        if options.eventLoopExecutor {
            let group = MultiThreadedEventLoopGroup.singleton.next()
            loopGroup = group
            executor = EventLoopTaskExecutor(group: group)
        } else {
            loopGroup = MultiThreadedEventLoopGroup.singleton
            executor = nil
        }
        let all = try (0..<(options.conns + extraConnections)).map { index in
            let endpoint = endpoints[index % endpoints.count]
            let transport = try Transport(
                target: target(for: endpoint),
                transportSecurity: security,
                config: transportConfig(counters: counters, answerPings: !options.withoutPingResponder),
                eventLoopGroup: index >= options.conns ? (extraLoop ?? loopGroup) : loopGroup
            )
            return GRPCClient(transport: transport)
        }
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            for client in all {
                group.addTask(executorPreference: executor) { try await client.runConnections() }
            }
            defer {
                for client in all { client.beginGracefulShutdown() }
            }
            var connections = Connections(
                clients: Array(all[..<options.conns]),
                extraClients: Array(all[options.conns...]),
                counters: counters,
                executor: executor,
                extraExecutor: extraLoop.map { EventLoopTaskExecutor(group: $0) }
            )
            if let user = options.user {
                connections.metadata = try await authenticate(user: user, client: all[0])
            }
            return try await body(connections)
        }
    }

    private static func target(for endpoint: Endpoint) -> any ResolvableTarget {
        if endpoint.host.split(separator: ".").count == 4 && endpoint.host.allSatisfy({ $0.isNumber || $0 == "." }) {
            return .ipv4(address: endpoint.host, port: endpoint.port)
        }
        if endpoint.host.contains(":") {
            return .ipv6(address: endpoint.host, port: endpoint.port)
        }
        return .dns(host: endpoint.host, port: endpoint.port)
    }

    private static func transportSecurity(
        _ options: GlobalOptions,
        endpoints: [Endpoint]
    ) throws -> Transport.TransportSecurity {
        let wantsTLS = options.usesTLS || endpoints.contains(where: \.isHTTPS)
        guard wantsTLS else { return .plaintext }
        return .tls { config in
            if let cacert = options.cacert {
                config.trustRoots = .certificates([.file(path: cacert, format: .pem)])
            }
            if let cert = options.cert, let key = options.key {
                config.certificateChain = [.file(path: cert, format: .pem)]
                config.privateKey = .file(path: key, format: .pem)
            }
        }
    }

    /// The stock Posix configuration plus an `HTTP2PingResponder` in front of every connection's
    /// HTTP/2 handler (see that type for why).
    private static func transportConfig(counters: HTTP2ConnectionCounters, answerPings: Bool) -> Transport.Config {
        .defaults { config in
            config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let http2 = try sync.handler(type: NIOHTTP2Handler.self)
                    try sync.addHandler(HTTP2PingResponder(role: .client, counters: counters, answerPings: answerPings), position: .before(http2))
                }
            }
        }
    }

    /// Auth.Authenticate with `name[:password]`; the token goes out as `token` metadata, as
    /// clientv3 sends it.
    private static func authenticate(user: String, client: GRPCClient<Transport>) async throws -> Metadata {
        var request = Etcdserverpb_AuthenticateRequest()
        if let colon = user.firstIndex(of: ":") {
            request.name = String(user[..<colon])
            request.password = String(user[user.index(after: colon)...])
        } else {
            request.name = user
        }
        let response = try await Etcdserverpb_Auth.Client(wrapping: client).authenticate(request)
        var metadata = Metadata()
        metadata.addString(response.token, forKey: "token")
        return metadata
    }
}
