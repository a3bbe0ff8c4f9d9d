import EtcdLeanRPC
import EtcdTransport
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// The listeners of `--experimental-lean-grpc-listen-urls`: plaintext HTTP/2 connections whose
/// streams the lean gRPC server handles inline (see `LeanRPCServerHandler`), with the same PING
/// responder in front as the grpc-swift listeners.
struct LeanGRPCListeners {
    let channels: [any Channel]
    /// The connections accepted and still open, closed with the listeners.
    let connections: OpenConnections

    final class OpenConnections: Sendable {
        private let open = Mutex<[ObjectIdentifier: any Channel]>([:])

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            open.withLock { $0[key] = channel }
            channel.closeFuture.whenComplete { _ in _ = self.open.withLock { $0.removeValue(forKey: key) } }
        }

        /// Drains every connection (GOAWAY, open calls finish, then it closes); whatever is
        /// still open after `gracePeriod` is closed.
        func drainAll(gracePeriod: Duration) async {
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
                } else {
                    try? await channel.close()
                }
            }
        }
    }

    /// Binds every URL; a URL that cannot be bound closes what was bound and throws.
    static func bind(
        _ urls: [EndpointURL], table: LeanServiceTable, configuration: ServerConfiguration,
        counters: HTTP2ConnectionCounters, logger: Logger
    ) async throws -> LeanGRPCListeners {
        let group = MultiThreadedEventLoopGroup.singleton
        // Calls run on the loop of their connection (see EventLoopTaskExecutor).
        let executor = EventLoopTaskExecutor(group: group)
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
        var channels: [any Channel] = []
        let connections = OpenConnections()
        for url in urls {
            guard url.scheme == "http" else {
                throw ConfigurationError.unsupported("listening on \(url) needs TLS, which is not supported yet")
            }
            let host = url.host == "localhost" ? "127.0.0.1" : url.host
            do {
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        connections.add(channel)
                        return channel.eventLoop.makeCompletedFuture {
                            let pipeline = channel.pipeline.syncOperations
                            try pipeline.addHandler(HTTP2PingResponder(role: .server, counters: counters, policy: pingPolicy))
                            try pipeline.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                            try pipeline.addHandler(
                                LeanRPCServerHandler(dispatcher: table, executor: executor, configuration: handlerConfiguration))
                        }
                    }
                    .bind(host: host, port: url.port).get()
                channels.append(channel)
                logger.warning(
                    "serving insecure lean gRPC (unary calls only) on \(host):\(channel.localAddress?.port ?? url.port), this is experimental",
                    metadata: ["url": "\(url)"])
            } catch {
                for channel in channels { try? await channel.close() }
                throw ConfigurationError.invalid("cannot listen for lean gRPC on \(url): \(error)")
            }
        }
        return LeanGRPCListeners(channels: channels, connections: connections)
    }

    /// The bound addresses, in the order of the URLs.
    var addresses: [SocketAddressDescription] {
        channels.compactMap { channel in
            guard let address = channel.localAddress, let port = address.port else { return nil }
            return SocketAddressDescription(host: address.ipAddress ?? "", port: port)
        }
    }

    /// Stops accepting, then drains every connection for at most `gracePeriod` (the calls in
    /// flight finish, as etcd's graceful stop lets them).
    func close(gracePeriod: Duration) async {
        for channel in channels { try? await channel.close() }
        await connections.drainAll(gracePeriod: gracePeriod)
    }
}
