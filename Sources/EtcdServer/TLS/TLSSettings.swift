/// One side's TLS flags, client or peer, as etcd's `transport.TLSInfo` holds them: the client side
/// from `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, ... and the peer
/// side from their `--peer-*` counterparts.
public struct TLSSettings: Sendable, Hashable {
    /// The certificate (chain) and key the server presents (`--cert-file`, `--key-file`).
    public var certFile = ""
    public var keyFile = ""
    /// The CA that client certificates must chain to (`--trusted-ca-file`). As in etcd, setting
    /// it makes client certificates required even without `clientCertAuth`; dialers also trust it.
    public var trustedCAFile = ""
    /// Require and verify client certificates (`--client-cert-auth`); on the client side it also
    /// makes the certificate's CommonName the caller's identity, as etcd's auth uses it.
    public var clientCertAuth = false
    /// A certificate revocation list (`--client-crl-file`): a connection whose certificate's
    /// serial number it lists is closed after the handshake, as etcd does.
    public var crlFile = ""
    /// A verified client certificate must carry one of these CommonNames
    /// (`--peer-cert-allowed-cn`, comma-separated since etcd 3.5.15); empty allows any.
    public var allowedCommonNames: [String] = []
    /// A verified client certificate must be valid for one of these hosts
    /// (`--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`); empty allows any.
    public var allowedHostnames: [String] = []
    /// A self-signed certificate made at start (`--auto-tls`), used only when no certificate
    /// files are given.
    public var autoTLS = false
    /// The certificate presented when this member dials as a client (etcd 3.5's
    /// `--client-cert-file`, `--peer-client-cert-file`); empty: the server's own.
    public var clientCertFile = ""
    public var clientKeyFile = ""
    /// Peers only (`--experimental-peer-skip-client-san-verification`): do not check that a
    /// peer's client certificate names the address it connects from.
    public var skipClientSANVerification = false
    /// Set when ``certFile`` is a certificate made for ``autoTLS``: dialers then skip verifying
    /// the other side, as etcd does for its self-signed certificates.
    public var isSelfSigned = false

    public init() {}

    /// No certificate to serve with (etcd's `TLSInfo.Empty`).
    public var isEmpty: Bool { certFile.isEmpty && keyFile.isEmpty }

    /// Whether a connecting client must present a certificate that verifies.
    var requiresClientCertificate: Bool { clientCertAuth || !trustedCAFile.isEmpty }

    /// The certificate and key presented when dialing.
    var dialingCertificate: (certFile: String, keyFile: String) {
        clientCertFile.isEmpty ? (certFile, keyFile) : (clientCertFile, clientKeyFile)
    }
}

extension TLSSettings {
    /// The flags of one side, for reading them and for messages.
    struct FlagNames: Sendable {
        var cert: String
        var key: String
        var trustedCA: String
        var clientCertAuth: String
        var crl: String
        var allowedCommonNames: String?
        var allowedHostnames: String
        var autoTLS: String
        var clientCert: String
        var clientKey: String
        var skipClientSANVerification: String?

        static let client = FlagNames(
            cert: "cert-file", key: "key-file", trustedCA: "trusted-ca-file", clientCertAuth: "client-cert-auth",
            crl: "client-crl-file", allowedCommonNames: nil, allowedHostnames: "client-cert-allowed-hostname",
            autoTLS: "auto-tls", clientCert: "client-cert-file", clientKey: "client-key-file", skipClientSANVerification: nil)
        static let peer = FlagNames(
            cert: "peer-cert-file", key: "peer-key-file", trustedCA: "peer-trusted-ca-file",
            clientCertAuth: "peer-client-cert-auth", crl: "peer-crl-file", allowedCommonNames: "peer-cert-allowed-cn",
            allowedHostnames: "peer-cert-allowed-hostname", autoTLS: "peer-auto-tls", clientCert: "peer-client-cert-file",
            clientKey: "peer-client-key-file", skipClientSANVerification: "experimental-peer-skip-client-san-verification")
    }
}

/// What both sides share: the protocol versions, cipher suites and the validity of self-signed
/// certificates (`--tls-min-version`, `--tls-max-version`, `--cipher-suites`,
/// `--self-signed-cert-validity`).
public struct TLSProtocolSettings: Sendable, Hashable {
    public enum Version: String, Sendable, Hashable, Comparable {
        case tls12 = "TLS1.2"
        case tls13 = "TLS1.3"

        public static func < (left: Version, right: Version) -> Bool { left == .tls12 && right == .tls13 }
    }

    /// etcd's default minimum is TLS 1.2 (older versions are refused).
    public var minimumVersion: Version = .tls12
    /// nil: the highest the library speaks (TLS 1.3).
    public var maximumVersion: Version?
    /// Go's (IANA) names of the TLS 1.2 cipher suites to offer, in order; empty: the library's
    /// defaults. Checked against ``GoCipherSuites`` when parsed.
    public var cipherSuites: [String] = []
    /// Years a certificate made for `--auto-tls` or `--peer-auto-tls` is valid.
    public var selfSignedCertValidityYears = 1

    public init() {}
}
