import EtcdLeanRPC
import EtcdTransport
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// Listeners of the lean gRPC server (the client URLs by default, and
/// `--experimental-lean-grpc-listen-urls`): HTTP/2 connections, plaintext or TLS (see
/// ``ListenerPlan``), whose streams are
/// handled inline (see `LeanRPCServerHandler`), with the PING responder in front (client PINGs,
/// `--grpc-keepalive-min-time`) and the server's own keepalive behind (`--grpc-keepalive-interval`
/// and `--grpc-keepalive-timeout`).
struct LeanGRPCListeners {
    /// One listener per distinct host:port of the URLs.
    let channels: [any Channel]
    /// For each URL, in order, which of ``channels`` serves it.
    let listenerOfURL: [Int]
    /// The connections accepted and still open, closed with the listeners.
    let connections: OpenConnections
    /// The calls still running on those connections.
    let calls: LeanRPCCallTracker

    final class OpenConnections: Sendable {
        private let open = Mutex<[ObjectIdentifier: any Channel]>([:])

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            open.withLock { $0[key] = channel }
            channel.closeFuture.whenComplete { _ in _ = self.open.withLock { $0.removeValue(forKey: key) } }
        }

        /// Drains every connection (GOAWAY, open calls finish, then it closes); whatever is
        /// still open after `gracePeriod` is closed. Returns whether all drained in time.
        func drainAll(gracePeriod: Duration) async -> Bool {
            var drained = true
            let channels = open.withLock { Array($0.values) }
            for channel in channels {
                channel.pipeline.fireUserInboundEventTriggered(LeanRPCServerHandler.Drain())
            }
            let deadline = ContinuousClock.now.advanced(by: gracePeriod)
            for channel in channels {
                let remaining = ContinuousClock.now.duration(to: deadline)
                let closed = channel.closeFuture
                if remaining > .zero {
                    let timer = channel.eventLoop.scheduleTask(in: TimeAmount(remaining)) { channel.close(promise: nil) }
                    try? await closed.get()
                    timer.cancel()
                    // The timer's result is a success only if it ran, i.e. closed the connection.
                    if (try? await timer.futureResult.get()) != nil { drained = false }
                } else if channel.isActive {
                    drained = false
                    try? await channel.close()
                }
                // One turn of its loop after the close, by which its handlers are removed (and
                // with them their hold on the services).
                try? await channel.eventLoop.submit {}.get()
            }
            return drained
        }
    }

    /// Binds every URL; a URL that cannot be bound closes what was bound and throws.
    static func bind(
        _ urls: [EndpointURL], table: LeanServiceTable, configuration: ServerConfiguration,
        counters: HTTP2ConnectionCounters, http: (any HTTPResponder)? = nil, tls: TLSContexts? = nil, logger: Logger
    ) async throws -> LeanGRPCListeners {
        let group = MultiThreadedEventLoopGroup.singleton
        var policy = HTTP2PingPolicy()
        policy.minimumInterval = .nanoseconds(max(0, configuration.grpcKeepaliveMinTime.nanosecondsClamped))
        let pingPolicy = policy
        let handlerConfiguration = LeanRPCServerHandler.Configuration(maxRequestBytes: configuration.maxMessageBytes)
        let settings: HTTP2Settings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: Int(min(configuration.maxConcurrentStreams, UInt32(Int32.max)))),
            // The window the handler gives back as data arrives is the one announced here.
            HTTP2Setting(parameter: .initialWindowSize, value: handlerConfiguration.streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 14),
        ]
        // etcd's server keepalive: ping a connection idle for --grpc-keepalive-interval (2 h;
        // 0 disables), drop it if nothing answers within --grpc-keepalive-timeout (20 s).
        let keepalive: (interval: TimeAmount, timeout: TimeAmount)? =
            configuration.grpcKeepaliveInterval > .zero
            ? (TimeAmount(configuration.grpcKeepaliveInterval), TimeAmount(max(configuration.grpcKeepaliveTimeout, .milliseconds(1))))
            : nil
        var connectionSettings = NIOHTTP2Handler.ConnectionConfiguration()
        connectionSettings.initialSettings = settings
        var streamSettings = NIOHTTP2Handler.StreamConfiguration()
        // Clients reset every call they stop early: clientv3's KeepAliveOnce resets its stream
        // after the answer, thousands of times a second under load. swift-nio-http2's default
        // (200 RST_STREAM in 30 s, then the connection is dropped) would cut such clients off;
        // a reset costs this server one cancelled task, so the limit only stops a flood far
        // beyond any client's rate.
        streamSettings.streamResetFrameRateLimit.maximumCount = 200_000
        streamSettings.streamResetFrameRateLimit.windowLength = .seconds(10)
        let (connection, streams) = (connectionSettings, streamSettings)
        var channels: [any Channel] = []
        let connections = OpenConnections()
        let calls = LeanRPCCallTracker()
        // etcd serves the URLs of one host:port on one listener: plaintext, TLS, or both.
        let listeners = ListenerPlan(urls)
        for listener in listeners.addresses {
            let host = listener.host == "localhost" ? "127.0.0.1" : listener.host
            do {
                let security = try listener.security(tls: tls)
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        connections.add(channel)
                        return channel.eventLoop.makeCompletedFuture {
                            let pipeline = channel.pipeline.syncOperations
                            try security.addHandlers(to: pipeline)
                            // etcd's client port also speaks HTTP/1.1 (health, metrics, the
                            // JSON gateway); the sniffer tells the two apart (behind TLS, if any).
                            if let http {
                                try pipeline.addHandler(
                                    HTTPPipeline.sniffer(responder: http, maxBodyBytes: configuration.maxMessageBytes))
                            }
                            try pipeline.addHandler(HTTP2PingResponder(role: .server, counters: counters, policy: pingPolicy))
                            try pipeline.addHandler(
                                NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: streams))
                            if let keepalive {
                                try pipeline.addHandler(ServerKeepaliveHandler(interval: keepalive.interval, timeout: keepalive.timeout))
                            }
                            try pipeline.addHandler(
                                // Calls run on the loop of their connection, and resume there
                                // when the Raft loop or the applier answers them.
                                LeanRPCServerHandler(
                                    dispatcher: table, executor: SingleEventLoopTaskExecutor(channel.eventLoop),
                                    configuration: handlerConfiguration, tracker: calls))
                        }
                    }
                    .bind(host: host, port: listener.port).get()
                channels.append(channel)
                logger.debug(
                    "lean gRPC listening",
                    metadata: ["address": "\(host):\(channel.localAddress?.port ?? listener.port)", "urls": "\(listener.urls)"])
            } catch {
                for channel in channels { try? await channel.close() }
                throw ConfigurationError.invalid("cannot listen for lean gRPC on \(listener.urls[0]): \(error)")
            }
        }
        return LeanGRPCListeners(
            channels: channels, listenerOfURL: listeners.listenerOfURL, connections: connections, calls: calls)
    }

    /// The bound address of each URL, in the order of the URLs (URLs of one host:port share one).
    var addresses: [SocketAddressDescription] {
        listenerOfURL.compactMap { index in
            guard let address = channels[index].localAddress, let port = address.port else { return nil }
            return SocketAddressDescription(host: address.ipAddress ?? "", port: port)
        }
    }

    /// Stops accepting, then drains every connection for at most `gracePeriod` (the calls in
    /// flight finish, as etcd's graceful stop lets them). Returns whether all drained in time.
    ///
    /// Returns only once every call's task has ended too (their connections are closed by then,
    /// which cancels them), so that nothing of the server (its services, the member's backend)
    /// outlives the stop: a server started again on the same data directory finds it free.
    func close(gracePeriod: Duration) async -> Bool {
        for channel in channels { try? await channel.close() }
        let drained = await connections.drainAll(gracePeriod: gracePeriod)
        // Closed connections cancelled their calls; a call that ignored it for 5 s is left.
        await calls.waitUntilIdle(timeout: .seconds(5))
        return drained
    }
}
