import GRPCNIOTransportHTTP2
import Logging

/// Everything TLS a member needs, built once at start from its configuration: the client
/// side's contexts (client URLs and `https://` metrics URLs), the peer side's (peer listeners and
/// dialers), and how the member dials other members' client URLs (its leader forwarding and
/// corruption checks). Self-signed certificates for `--auto-tls` and `--peer-auto-tls` are made
/// here. With no TLS flag and no `https://` URL, everything is nil and nothing changes.
struct ServerSecurity: Sendable {
    /// For `https://` client URLs; nil when there is none.
    var client: TLSContexts?
    /// For `https://` metrics URLs: the client certificate, with etcd's check that a client
    /// certificate names the address it connects from.
    var metrics: TLSContexts?
    /// For `https://` peer URLs, listening and dialing; nil when no peer URL known at start is
    /// `https://` and no peer TLS flag is set.
    var peer: TLSContexts?
    /// The client side's settings, once `--auto-tls` is resolved: what this member presents and
    /// trusts when it dials another member's `https://` client URL.
    var clientSettings: TLSSettings

    static let none = ServerSecurity(client: nil, metrics: nil, peer: nil, clientSettings: TLSSettings())

    /// The ALPN protocols of client listeners, in the server's order of preference: HTTP/1.1
    /// first, so that a client offering both (curl, browsers) gets the HTTP endpoints over
    /// HTTP/1.1, while gRPC clients, which offer only `h2`, get HTTP/2.
    static let clientProtocols = ["http/1.1", "h2"]

    init(client: TLSContexts?, metrics: TLSContexts?, peer: TLSContexts?, clientSettings: TLSSettings) {
        self.client = client
        self.metrics = metrics
        self.peer = peer
        self.clientSettings = clientSettings
    }

    init(_ configuration: ServerConfiguration, logger: Logger) throws {
        let data = configuration.effectiveDataDirectory
        let shared = configuration.tlsProtocol
        let clientSettings = try SelfSignedCertificate.resolve(
            configuration.clientTLS, directory: data + "/fixtures/client", hosts: configuration.listenClientURLs.map(\.host),
            validityYears: shared.selfSignedCertValidityYears, side: "client", logger: logger)
        let peerSettings = try SelfSignedCertificate.resolve(
            configuration.peerTLS, directory: data + "/fixtures/peer", hosts: configuration.listenPeerURLs.map(\.host),
            validityYears: shared.selfSignedCertValidityYears, side: "peer", logger: logger)
        Self.warnAboutPlaintextURLs(configuration.listenClientURLs, settings: clientSettings, side: "client", logger: logger)
        Self.warnAboutPlaintextURLs(configuration.listenPeerURLs, settings: peerSettings, side: "peer", logger: logger)
        self.clientSettings = clientSettings

        let clientURLs = configuration.listenClientURLs + configuration.leanGRPCListenURLs
        if clientURLs.contains(where: { $0.scheme == "https" }) {
            logger.info(
                "starting with client TLS",
                metadata: ["tls-info": "\(Self.describe(clientSettings))", "cipher-suites": "\(shared.cipherSuites)"])
            client = try TLSContexts(
                settings: clientSettings, protocolSettings: shared, flags: .client, applicationProtocols: Self.clientProtocols,
                checksRemoteAddress: false, reportsCommonName: true, logger: logger, listener: "client")
        }
        if configuration.listenMetricsURLs.contains(where: { $0.scheme == "https" }) {
            metrics = try TLSContexts(
                settings: clientSettings, protocolSettings: shared, flags: .client, applicationProtocols: ["http/1.1"],
                checksRemoteAddress: true, reportsCommonName: false, logger: logger, listener: "metrics")
        }
        let peerURLs = configuration.listenPeerURLs + configuration.initialAdvertisePeerURLs
        let httpsPeers =
            peerURLs.contains { $0.scheme == "https" } || configuration.effectiveInitialCluster.contains("https://")
        if httpsPeers || !peerSettings.isEmpty || !peerSettings.trustedCAFile.isEmpty {
            logger.info(
                "starting with peer TLS",
                metadata: ["tls-info": "\(Self.describe(peerSettings))", "cipher-suites": "\(shared.cipherSuites)"])
            peer = try TLSContexts(
                settings: peerSettings, protocolSettings: shared, flags: .peer, applicationProtocols: [],
                checksRemoteAddress: true, reportsCommonName: false, logger: logger, listener: "peer")
        }
    }

    /// etcd's `TLSInfo.String`.
    static func describe(_ settings: TLSSettings) -> String {
        "cert = \(settings.certFile), key = \(settings.keyFile), client-cert=\(settings.clientCertFile), "
            + "client-key=\(settings.clientKeyFile), trusted-ca = \(settings.trustedCAFile), "
            + "client-cert-auth = \(settings.clientCertAuth), crl-file = \(settings.crlFile)"
    }

    /// etcd's warnings for `http://` URLs while certificates or client certificate
    /// authentication are configured: they are ignored for those URLs.
    private static func warnAboutPlaintextURLs(_ urls: [EndpointURL], settings: TLSSettings, side: String, logger: Logger) {
        for url in urls where url.scheme == "http" {
            if !settings.isEmpty {
                logger.warning(
                    "scheme is HTTP while key and cert files are present; ignoring key and cert files",
                    metadata: ["\(side)-url": "\(url)"])
            }
            if settings.clientCertAuth {
                let flag = side == "peer" ? "--peer-client-cert-auth" : "--client-cert-auth"
                logger.warning(
                    "scheme is HTTP while \(flag) is enabled; ignoring client cert auth for this URL",
                    metadata: ["\(side)-url": "\(url)"])
            }
        }
    }

    /// How to reach another member's client URL with grpc-swift: plaintext for `http://`; for
    /// `https://`, TLS presenting this member's client certificate (etcd 3.5's
    /// `--client-cert-file`, else `--cert-file`), trusting `--trusted-ca-file` (else the
    /// system's roots), and skipping verification only of self-signed certificates.
    func transportSecurity(for url: EndpointURL) -> HTTP2ClientTransport.Posix.TransportSecurity {
        guard url.scheme == "https" else { return .plaintext }
        let settings = clientSettings
        let dialing = settings.dialingCertificate
        return .tls(
            .init(
                certificateChain: dialing.certFile.isEmpty ? [] : [.file(path: dialing.certFile, format: .pem)],
                privateKey: dialing.keyFile.isEmpty ? nil : .file(path: dialing.keyFile, format: .pem),
                serverCertificateVerification: settings.isSelfSigned ? .noVerification : .fullVerification,
                trustRoots: settings.trustedCAFile.isEmpty
                    ? .systemDefault : .certificates([.file(path: settings.trustedCAFile, format: .pem)])))
    }
}
