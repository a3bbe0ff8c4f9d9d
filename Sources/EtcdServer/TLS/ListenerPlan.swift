import NIOCore

/// The listeners a list of URLs asks for. As in etcd, URLs of one host:port share one listener,
/// which serves plaintext (`http://`), TLS (`https://`), or both when the port is listed with
/// both schemes (etcd 3.5 splits such a port by what the client sends first).
struct ListenerPlan {
    struct Address {
        var host: String
        var port: Int
        var urls: [EndpointURL]

        var plaintext: Bool { urls.contains { $0.scheme == "http" } }
        var secure: Bool { urls.contains { $0.scheme == "https" } }

        /// What accepted connections get in front, given this side's TLS (nil: none set up).
        func security(tls: TLSContexts?) throws(ConfigurationError) -> ListenerSecurity {
            guard secure else { return .plaintext }
            guard let tls, tls.serverContext != nil else {
                throw .invalid("cannot listen on TLS for \(host):\(port): KeyFile and CertFile are not presented")
            }
            return plaintext ? .sniffed(tls) : .tls(tls)
        }
    }

    private(set) var addresses: [Address] = []
    /// For each URL, the index of its listener in ``addresses``.
    private(set) var listenerOfURL: [Int] = []

    init(_ urls: [EndpointURL]) {
        for url in urls {
            if let index = addresses.firstIndex(where: { $0.host == url.host && $0.port == url.port }) {
                addresses[index].urls.append(url)
                listenerOfURL.append(index)
            } else {
                listenerOfURL.append(addresses.count)
                addresses.append(Address(host: url.host, port: url.port, urls: [url]))
            }
        }
    }
}

/// How an accepted connection starts: in plaintext, with a TLS handshake, or either, by its
/// first byte (see ``TLSPlaintextSniffer``).
enum ListenerSecurity: Sendable {
    case plaintext
    case tls(TLSContexts)
    case sniffed(TLSContexts)

    /// Adds the handlers in front of an accepted connection's pipeline (on its event loop).
    func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        switch self {
        case .plaintext:
            return
        case .tls(let tls):
            try tls.addServerHandlers(to: pipeline)
        case .sniffed(let tls):
            try pipeline.addHandler(
                TLSPlaintextSniffer { pipeline, sniffer in
                    try tls.addServerHandlers(to: pipeline, position: .after(sniffer))
                }, position: .first)
        }
    }
}
