import Logging
import NIOCore
import NIOSSL

/// One side's TLS (client or peer), ready for connections: BoringSSL contexts for accepting and
/// for dialing, built once at start from ``TLSSettings`` (a certificate or key that cannot be
/// loaded stops the start; the served one is read again when its files change, see
/// ``CertificateFiles``), and what an accepted certificate must also satisfy.
struct TLSContexts: Sendable {
    let settings: TLSSettings
    /// nil without a certificate to serve with (a member that only dials https peers).
    let serverContext: NIOSSLContext?
    let clientContext: NIOSSLContext
    let admission: CertificateAdmission
    let failures: TLSFailureLog

    /// - Parameters:
    ///   - applicationProtocols: ALPN protocols a server offers, in its order of preference.
    ///   - checksRemoteAddress: etcd's `checkSAN` (peer listeners).
    ///   - reportsCommonName: the verified client certificate's CommonName is the caller's
    ///     identity (client listeners with `--client-cert-auth`).
    init(
        settings: TLSSettings, protocolSettings: TLSProtocolSettings, flags: TLSSettings.FlagNames, applicationProtocols: [String],
        checksRemoteAddress: Bool, reportsCommonName: Bool, logger: Logger, listener: String
    ) throws(ConfigurationError) {
        self.settings = settings
        let ciphers = try GoCipherSuites.boringSSLCipherList(protocolSettings.cipherSuites)
        func common(_ configuration: inout TLSConfiguration) {
            configuration.minimumTLSVersion = protocolSettings.minimumVersion == .tls13 ? .tlsv13 : .tlsv12
            configuration.maximumTLSVersion = protocolSettings.maximumVersion.map { $0 == .tls13 ? .tlsv13 : .tlsv12 }
            if let ciphers { configuration.cipherSuites = ciphers }
        }
        var server: TLSConfiguration?
        if !settings.isEmpty {
            let files: CertificateFiles
            do {
                files = try CertificateFiles(certPath: settings.certFile, keyPath: settings.keyFile, logger: logger)
            } catch {
                throw .invalid(
                    "cannot load the TLS certificate and key (--\(flags.cert)=\(settings.certFile), "
                        + "--\(flags.key)=\(settings.keyFile)): \(error)")
            }
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: files.chain, privateKey: files.key)
            common(&configuration)
            // Replaced certificate files take effect at the next handshake, as in etcd.
            configuration.sslContextCallback = { _, promise in files.complete(promise) }
            configuration.applicationProtocols = applicationProtocols
            if settings.requiresClientCertificate {
                // etcd: a trusted CA file (or --client-cert-auth) makes client certificates
                // required and verified; without a CA file, against the system's roots as Go does.
                configuration.certificateVerification = .noHostnameVerification
                configuration.trustRoots = settings.trustedCAFile.isEmpty ? .default : .file(settings.trustedCAFile)
            } else {
                configuration.certificateVerification = .none
            }
            server = configuration
        }

        var client = TLSConfiguration.makeClientConfiguration()
        common(&client)
        let dialing = settings.dialingCertificate
        do {
            if !dialing.certFile.isEmpty {
                client.certificateChain = try NIOSSLCertificate.fromPEMFile(dialing.certFile).map { .certificate($0) }
                client.privateKey = .privateKey(try NIOSSLPrivateKey(file: dialing.keyFile, format: .pem))
            }
        } catch {
            throw .invalid("cannot load the TLS client certificate and key (\(dialing.certFile), \(dialing.keyFile)): \(error)")
        }
        // etcd's dialers skip verification only of its own self-signed certificates.
        client.certificateVerification = settings.isSelfSigned ? .none : .fullVerification
        client.trustRoots = settings.trustedCAFile.isEmpty ? .default : .file(settings.trustedCAFile)

        var admission = CertificateAdmission()
        do {
            admission.revocations = settings.crlFile.isEmpty ? nil : try RevocationListFile(path: settings.crlFile)
        } catch {
            throw .invalid("cannot read the certificate revocation list (--\(flags.crl)=\(settings.crlFile)): \(error)")
        }
        admission.allowedCommonNames = settings.allowedCommonNames
        admission.allowedHostnames = settings.allowedHostnames
        admission.checksRemoteAddress = checksRemoteAddress && !settings.skipClientSANVerification
        admission.reportsCommonName = reportsCommonName && settings.clientCertAuth
        self.admission = admission
        failures = TLSFailureLog(logger: logger, listener: listener)
        do {
            serverContext = try server.map { try NIOSSLContext(configuration: $0) }
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            throw .invalid(
                "cannot set up TLS with --\(flags.cert)=\(settings.certFile)"
                    + (settings.trustedCAFile.isEmpty ? "" : " --\(flags.trustedCA)=\(settings.trustedCAFile)") + ": \(error)")
        }
    }

    /// Puts TLS at the front of an accepted connection (on its event loop); returns the handler
    /// right behind the TLS handler, the guard that holds reads until the peer is admitted.
    @discardableResult
    func addServerHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations, position: ChannelPipeline.SynchronousOperations.Position = .first
    ) throws -> any ChannelHandler {
        guard let serverContext else { throw ConfigurationError.invalid("TLS without a certificate to serve with") }
        let guardHandler = TLSConnectionGuard(admission: admission, failures: failures)
        let tls = NIOSSLServerHandler(context: serverContext)
        try pipeline.addHandler(tls, position: position)
        try pipeline.addHandler(guardHandler, position: .after(tls))
        return guardHandler
    }

    /// Puts TLS at the front of a connection this member dials to `host`: SNI and hostname
    /// verification for a name, verification against the connected address for an IP.
    func addClientHandler(to pipeline: ChannelPipeline.SynchronousOperations, host: String) throws {
        let serverName = IPAddressBytes.parse(host) == nil ? host : nil
        try pipeline.addHandler(try NIOSSLClientHandler(context: clientContext, serverHostname: serverName), position: .first)
    }
}
