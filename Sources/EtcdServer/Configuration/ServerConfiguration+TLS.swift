import Foundation

extension ServerConfiguration {
    /// The TLS flags of both sides, checked as etcd 3.5 checks them at start.
    mutating func readTLS(_ flags: FlagValues) throws(ConfigurationError) {
        func bool(_ flag: String) -> Bool { FlagValues.parseBool(flags[flag]) ?? false }
        // etcd 3.5.15 takes comma-separated lists in the allowed CN and hostname flags.
        func list(_ flag: String) -> [String] {
            flags[flag].split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        var client = TLSSettings()
        client.certFile = flags["cert-file"]
        client.keyFile = flags["key-file"]
        client.trustedCAFile = flags["trusted-ca-file"]
        client.clientCertAuth = bool("client-cert-auth")
        client.crlFile = flags["client-crl-file"]
        client.allowedHostnames = list("client-cert-allowed-hostname")
        client.autoTLS = bool("auto-tls")
        client.clientCertFile = flags["client-cert-file"]
        client.clientKeyFile = flags["client-key-file"]
        clientTLS = client

        var peer = TLSSettings()
        peer.certFile = flags["peer-cert-file"]
        peer.keyFile = flags["peer-key-file"]
        peer.trustedCAFile = flags["peer-trusted-ca-file"]
        peer.clientCertAuth = bool("peer-client-cert-auth")
        peer.crlFile = flags["peer-crl-file"]
        peer.allowedCommonNames = list("peer-cert-allowed-cn")
        peer.allowedHostnames = list("peer-cert-allowed-hostname")
        peer.autoTLS = bool("peer-auto-tls")
        peer.clientCertFile = flags["peer-client-cert-file"]
        peer.clientKeyFile = flags["peer-client-key-file"]
        peer.skipClientSANVerification = bool("experimental-peer-skip-client-san-verification")
        peerTLS = peer

        var shared = TLSProtocolSettings()
        shared.cipherSuites = list("cipher-suites")
        shared.minimumVersion = TLSProtocolSettings.Version(rawValue: flags["tls-min-version"]) ?? .tls12
        shared.maximumVersion = TLSProtocolSettings.Version(rawValue: flags["tls-max-version"])
        shared.selfSignedCertValidityYears = Int(clamping: FlagValues.parseInteger(flags["self-signed-cert-validity"]) ?? 1)
        tlsProtocol = shared
        try Self.checkTLSProtocol(shared, minimumText: flags["tls-min-version"], maximumText: flags["tls-max-version"])
    }

    /// etcd 3.5's checks of the versions and cipher suites, with its messages.
    static func checkTLSProtocol(
        _ settings: TLSProtocolSettings, minimumText: String, maximumText: String
    ) throws(ConfigurationError) {
        if let maximum = settings.maximumVersion, settings.minimumVersion > maximum {
            throw .invalid("min version (\(minimumText)) is greater than max version (\(maximumText))")
        }
        // Go does not let TLS 1.3's suites be chosen, so a TLS 1.3-only server has none to set.
        if settings.minimumVersion == .tls13 && !settings.cipherSuites.isEmpty {
            throw .invalid("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
        _ = try GoCipherSuites.boringSSLCipherList(settings.cipherSuites)
    }

    /// The TLS settings against the URLs: what etcd refuses before it listens.
    func validateTLS() throws(ConfigurationError) {
        try Self.checkTLSProtocol(
            tlsProtocol, minimumText: tlsProtocol.minimumVersion.rawValue,
            maximumText: tlsProtocol.maximumVersion?.rawValue ?? "")
        for side in [clientTLS, peerTLS] { try Self.checkSide(side) }
        let selfSigned = (clientTLS.autoTLS && clientTLS.isEmpty) || (peerTLS.autoTLS && peerTLS.isEmpty)
        if selfSigned && tlsProtocol.selfSignedCertValidityYears <= 0 {
            throw .invalid("selfSignedCertValidity is invalid,it should be greater than 0")
        }
        let clientCertificate = !clientTLS.isEmpty || clientTLS.autoTLS
        for url in listenClientURLs where url.scheme == "https" && !clientCertificate {
            throw .invalid("TLS key/cert (--cert-file, --key-file) must be provided for client url \(url) with HTTPS scheme")
        }
        // etcd's listener for an https peer or metrics URL without a certificate.
        let peerCertificate = !peerTLS.isEmpty || peerTLS.autoTLS
        for url in listenPeerURLs where url.scheme == "https" && !peerCertificate {
            throw .invalid("cannot listen on TLS for \(url.host):\(url.port): KeyFile and CertFile are not presented")
        }
        for url in listenMetricsURLs where url.scheme == "https" && !clientCertificate {
            throw .invalid("cannot listen on TLS for \(url.host):\(url.port): KeyFile and CertFile are not presented")
        }
        for url in listenClientURLs + listenPeerURLs + listenMetricsURLs + leanGRPCListenURLs
        where url.scheme.hasPrefix("unix") {
            throw .unsupported("listening on \(url) needs unix sockets, which are not supported yet")
        }
        if grpcServer == .grpcSwift, let url = listenClientURLs.first(where: { $0.scheme == "https" }) {
            throw .unsupported(
                "--listen-client-urls=\(url): https client URLs are served by the lean gRPC server only; "
                    + "drop --experimental-grpc-server=grpc-swift")
        }
    }

    /// One side's own consistency, as etcd's `TLSInfo.baseConfig` checks it.
    private static func checkSide(_ side: TLSSettings) throws(ConfigurationError) {
        if side.certFile.isEmpty != side.keyFile.isEmpty {
            throw .invalid("KeyFile and CertFile must both be present[key: \(side.keyFile), cert: \(side.certFile)]")
        }
        if side.clientCertFile.isEmpty != side.clientKeyFile.isEmpty {
            throw .invalid(
                "ClientKeyFile and ClientCertFile must both be present or both absent: key: \(side.clientKeyFile), "
                    + "cert: \(side.clientCertFile)]")
        }
        if !side.allowedCommonNames.isEmpty && !side.allowedHostnames.isEmpty {
            throw .invalid(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns=\(goQuoted(side.allowedCommonNames)), "
                    + "hostnames=\(goQuoted(side.allowedHostnames)))")
        }
    }

    /// Go's `%q` of a string slice: `["a" "b"]`.
    private static func goQuoted(_ values: [String]) -> String {
        "[" + values.map { "\"\($0)\"" }.joined(separator: " ") + "]"
    }
}
