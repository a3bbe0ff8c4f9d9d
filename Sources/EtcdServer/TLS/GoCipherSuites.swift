/// The cipher suite names `--cipher-suites` takes: Go's `crypto/tls` names (the IANA names),
/// which etcd looks up in `tls.CipherSuites()` and `tls.InsecureCipherSuites()`, mapped to the
/// names BoringSSL's cipher lists use.
enum GoCipherSuites {
    /// How one of Go's names fares here.
    enum Support: Equatable {
        /// A TLS 1.2 suite BoringSSL offers, under this name.
        case boringSSL(String)
        /// A TLS 1.3 suite: Go accepts its name but never lets it restrict TLS 1.3, nor does this
        /// server (BoringSSL's TLS 1.3 suites are fixed).
        case tls13
        /// Go knows it (RC4, 3DES with ECDHE, RSA key exchange with CBC and SHA-256), BoringSSL
        /// does not. (NIOSSL traps on a cipher list BoringSSL cannot use, so the table must only
        /// hand it names BoringSSL's `kCiphers` has.)
        case unavailable
    }

    // swift-format-ignore
    /// Every name Go's `GetCipherSuite` accepts, with its IANA code point in the comment.
    static let table: [String: Support] = [
        "TLS_RSA_WITH_RC4_128_SHA": .unavailable,                                                 // 0x0005
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": .boringSSL("DES-CBC3-SHA"),                              // 0x000a
        "TLS_RSA_WITH_AES_128_CBC_SHA": .boringSSL("AES128-SHA"),                                 // 0x002f
        "TLS_RSA_WITH_AES_256_CBC_SHA": .boringSSL("AES256-SHA"),                                 // 0x0035
        "TLS_RSA_WITH_AES_128_CBC_SHA256": .unavailable,                                          // 0x003c
        "TLS_RSA_WITH_AES_128_GCM_SHA256": .boringSSL("AES128-GCM-SHA256"),                       // 0x009c
        "TLS_RSA_WITH_AES_256_GCM_SHA384": .boringSSL("AES256-GCM-SHA384"),                       // 0x009d
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": .unavailable,                                         // 0xc007
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": .boringSSL("ECDHE-ECDSA-AES128-SHA"),             // 0xc009
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": .boringSSL("ECDHE-ECDSA-AES256-SHA"),             // 0xc00a
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA": .unavailable,                                           // 0xc011
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": .unavailable,                                      // 0xc012
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": .boringSSL("ECDHE-RSA-AES128-SHA"),                 // 0xc013
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": .boringSSL("ECDHE-RSA-AES256-SHA"),                 // 0xc014
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": .boringSSL("ECDHE-ECDSA-AES128-SHA256"),       // 0xc023
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": .boringSSL("ECDHE-RSA-AES128-SHA256"),           // 0xc027
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": .boringSSL("ECDHE-ECDSA-AES128-GCM-SHA256"),   // 0xc02b
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": .boringSSL("ECDHE-ECDSA-AES256-GCM-SHA384"),   // 0xc02c
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": .boringSSL("ECDHE-RSA-AES128-GCM-SHA256"),       // 0xc02f
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": .boringSSL("ECDHE-RSA-AES256-GCM-SHA384"),       // 0xc030
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": .boringSSL("ECDHE-RSA-CHACHA20-POLY1305"), // 0xcca8
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": .boringSSL("ECDHE-ECDSA-CHACHA20-POLY1305"), // 0xcca9
        // The short names etcd's tlsutil also accepts.
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": .boringSSL("ECDHE-RSA-CHACHA20-POLY1305"),
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": .boringSSL("ECDHE-ECDSA-CHACHA20-POLY1305"),
        "TLS_AES_128_GCM_SHA256": .tls13,                                                        // 0x1301
        "TLS_AES_256_GCM_SHA384": .tls13,                                                        // 0x1302
        "TLS_CHACHA20_POLY1305_SHA256": .tls13,                                                  // 0x1303
    ]

    /// BoringSSL's cipher list for Go's `names`, in their order, or nil when they name no TLS 1.2
    /// suite (BoringSSL's defaults then stay). An unknown name is etcd's start-up error; a name Go
    /// knows but BoringSSL does not is refused too, rather than silently left out.
    static func boringSSLCipherList(_ names: [String]) throws(ConfigurationError) -> String? {
        var list: [String] = []
        for name in names {
            switch table[name] {
            case nil:
                throw .invalid("unexpected TLS cipher suite \"\(name)\"")
            case .unavailable:
                throw .invalid(
                    "TLS cipher suite \"\(name)\" is not supported by this server's TLS library (BoringSSL)")
            case .tls13:
                continue
            case .boringSSL(let cipher):
                if !list.contains(cipher) { list.append(cipher) }
            }
        }
        return list.isEmpty ? nil : list.joined(separator: ":")
    }
}
