import Logging
import NIOCore
import NIOPosix

/// The HTTP/1.1 listeners of `--listen-metrics-urls` (plaintext, or TLS with the client
/// certificate for `https://` URLs, as etcd serves them): /metrics, /health, /livez, /readyz
/// and /version, without the gateway, as etcd serves them apart from client traffic (so that
/// scrapes and probes need not share the client port).
struct MetricsListeners {
    let channels: [any Channel]
    /// Accepted connections, closed (once idle) with the listeners.
    let connections: LeanGRPCListeners.OpenConnections

    /// Binds every URL; one that cannot be bound closes the others and throws, as etcd refuses
    /// to start without its metrics listeners.
    static func bind(
        _ urls: [EndpointURL], responder: HTTPEndpoints, tls: TLSContexts? = nil, logger: Logger
    ) async throws -> MetricsListeners {
        var channels: [any Channel] = []
        let connections = LeanGRPCListeners.OpenConnections()
        for listener in ListenerPlan(urls).addresses {
            let host = listener.host == "localhost" ? "127.0.0.1" : listener.host
            do {
                let security = try listener.security(tls: tls)
                let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        connections.add(channel)
                        return channel.eventLoop.makeCompletedFuture {
                            try security.addHandlers(to: channel.pipeline.syncOperations)
                            // Only small GET requests are meant for these endpoints.
                            try HTTPPipeline.configure(
                                channel.pipeline.syncOperations, at: .last, responder: responder, maxBodyBytes: 1 << 16,
                                extraHeaders: [])
                        }
                    }
                    .bind(host: host, port: listener.port).get()
                channels.append(channel)
                logger.info(
                    "serving metrics",
                    metadata: ["address": "\(host):\(channel.localAddress?.port ?? listener.port)", "url": "\(listener.urls[0])"])
            } catch {
                for channel in channels { try? await channel.close() }
                throw ConfigurationError.invalid("cannot listen for metrics on \(listener.urls[0]): \(error)")
            }
        }
        return MetricsListeners(channels: channels, connections: connections)
    }

    /// The bound addresses, in the order of the URLs.
    var addresses: [SocketAddressDescription] {
        channels.compactMap { channel in
            guard let address = channel.localAddress, let port = address.port else { return nil }
            return SocketAddressDescription(host: address.ipAddress ?? "", port: port)
        }
    }

    /// Stops accepting, then closes the connections once their requests are answered (a
    /// scrape or probe takes moments; one still running after a second is cut).
    func close() async {
        for channel in channels { try? await channel.close() }
        _ = await connections.drainAll(gracePeriod: .seconds(1))
    }
}
