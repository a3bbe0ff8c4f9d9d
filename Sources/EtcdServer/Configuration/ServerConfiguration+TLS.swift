import Foundation

extension ServerConfiguration {
    /// The TLS flags of both sides, checked as etcd 3.5 checks them at start.
    mutating func readTLS(_ flags: FlagValues) throws(ConfigurationError) {
        clientTLS = Self.readSide(flags, .client)
        peerTLS = Self.readSide(flags, .peer)
        var shared = TLSProtocolSettings()
        shared.cipherSuites = Self.list(flags["cipher-suites"])
        shared.minimumVersion = TLSProtocolSettings.Version(rawValue: flags["tls-min-version"]) ?? .tls12
        shared.maximumVersion = TLSProtocolSettings.Version(rawValue: flags["tls-max-version"])
        shared.selfSignedCertValidityYears = Int(clamping: FlagValues.parseInteger(flags["self-signed-cert-validity"]) ?? 1)
        tlsProtocol = shared
        try Self.checkTLSProtocol(shared, minimumText: flags["tls-min-version"], maximumText: flags["tls-max-version"])
    }

    /// One side's settings from its flags.
    private static func readSide(_ flags: FlagValues, _ names: TLSSettings.FlagNames) -> TLSSettings {
        func bool(_ flag: String?) -> Bool { flag.flatMap { FlagValues.parseBool(flags[$0]) } ?? false }
        var side = TLSSettings()
        side.certFile = flags[names.cert]
        side.keyFile = flags[names.key]
        side.trustedCAFile = flags[names.trustedCA]
        side.clientCertAuth = bool(names.clientCertAuth)
        side.crlFile = flags[names.crl]
        side.allowedCommonNames = names.allowedCommonNames.map { list(flags[$0]) } ?? []
        side.allowedHostnames = list(flags[names.allowedHostnames])
        side.autoTLS = bool(names.autoTLS)
        side.clientCertFile = flags[names.clientCert]
        side.clientKeyFile = flags[names.clientKey]
        side.skipClientSANVerification = bool(names.skipClientSANVerification)
        return side
    }

    /// A comma-separated flag's values (etcd 3.5.15 takes lists in the allowed CN and hostname
    /// flags, and `--cipher-suites` always did).
    private static func list(_ value: String) -> [String] {
        value.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
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
