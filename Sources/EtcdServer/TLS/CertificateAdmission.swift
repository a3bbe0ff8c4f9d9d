import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a certificate from the other side must satisfy beyond the chain BoringSSL verified, as
/// etcd checks it after (or during) the handshake: not revoked (`--client-crl-file`), an allowed
/// CommonName (`--peer-cert-allowed-cn`) or hostname (`--*-cert-allowed-hostname`), and on peer
/// listeners, etcd's `checkSAN`: a certificate with IP or DNS names must name the address it
/// connects from (unless `--experimental-peer-skip-client-san-verification`).
struct CertificateAdmission: Sendable {
    var revocations: RevocationListFile?
    var allowedCommonNames: [String] = []
    var allowedHostnames: [String] = []
    var checksRemoteAddress = false
    /// Whether the verified certificate's CommonName is the caller's identity
    /// (`--client-cert-auth` on client listeners).
    var reportsCommonName = false

    /// Whether any check applies: without one, the handshake alone decides.
    var checksAnything: Bool {
        revocations != nil || !allowedCommonNames.isEmpty || !allowedHostnames.isEmpty || checksRemoteAddress
            || reportsCommonName
    }

    enum Verdict: Equatable {
        case admitted(commonName: String?)
        case refused(String)
        /// The certificate names the remote address only through DNS names, which must be looked
        /// up (off the event loop) before the connection can be admitted.
        case lookUp(names: [String], remoteIP: String, commonName: String?)
    }

    /// The checks that need no lookup. `leaf` is the other side's certificate, if it sent one
    /// (BoringSSL verified its chain when one is required).
    func admit(_ leaf: NIOSSLCertificate?, remoteAddress: SocketAddress?) -> Verdict {
        guard let leaf else { return .admitted(commonName: nil) }
        let commonName = leaf.subjectName.last { $0.type == .commonName }?.value
        if let revocations {
            switch revocations.current() {
            case .failure(let error):
                return .refused("cannot read the certificate revocation list \(revocations.path): \(error)")
            case .success(let list):
                if list.isRevoked(serial: leaf.serialNumber) {
                    let hex = CertificateRevocationList.normalized(leaf.serialNumber[...]).map { String(format: "%02x", $0) }.joined()
                    return .refused("transport: certificate serial \(hex) revoked")
                }
            }
        }
        let reported = reportsCommonName ? commonName : nil
        guard !allowedCommonNames.isEmpty || !allowedHostnames.isEmpty || checksRemoteAddress else {
            return .admitted(commonName: reported)
        }
        let names: AlternativeNames
        do {
            names = try AlternativeNames(leaf)
        } catch {
            return .refused("cannot read the client certificate: \(error)")
        }
        if !allowedCommonNames.isEmpty, !allowedCommonNames.contains(commonName ?? "") {
            return .refused("client certificate authentication failed")
        }
        if !allowedHostnames.isEmpty, !allowedHostnames.contains(where: names.matches(host:)) {
            return .refused("client certificate authentication failed")
        }
        guard checksRemoteAddress, !(names.addresses.isEmpty && names.dnsNames.isEmpty),
            let remote = remoteAddress?.ipAddress
        else { return .admitted(commonName: reported) }
        if names.matches(host: remote) { return .admitted(commonName: reported) }
        guard !names.dnsNames.isEmpty else {
            return .refused("tls: \"\(remote)\" does not match any of the certificate's IP addresses")
        }
        return .lookUp(names: names.dnsNames.filter { !$0.hasPrefix("*.") }, remoteIP: remote, commonName: reported)
    }

    /// etcd's forward lookup for `checkSAN`: whether one of `names` resolves to `remoteIP`. Runs
    /// `getaddrinfo` on the thread pool, never on the event loop.
    static func resolve(_ names: [String], to remoteIP: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
            names.contains { resolvedAddresses($0).contains(remoteIP) }
        }
    }

    private static func resolvedAddresses(_ name: String) -> [String] {
        var hints = addrinfo()
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var found: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let address = entry.pointee.ai_addr,
                let described = try? SocketAddress(address, length: entry.pointee.ai_addrlen).ipAddress
            {
                found.append(described)
            }
            cursor = entry.pointee.ai_next
        }
        return found
    }
}

/// The subject alternative names of a certificate, and Go's `VerifyHostname` on them: an IP
/// matches an IP address name; a host matches a DNS name, case-insensitively, a `*.` name
/// standing for one leftmost label. The CommonName is never consulted (Go 1.15 and later).
struct AlternativeNames: Sendable, Equatable {
    var dnsNames: [String] = []
    var addresses: [[UInt8]] = []

    init(dnsNames: [String], addresses: [[UInt8]]) {
        self.dnsNames = dnsNames
        self.addresses = addresses
    }

    init(_ certificate: NIOSSLCertificate) throws {
        let parsed = try Certificate(derEncoded: certificate.toDERBytes())
        guard let names = try parsed.extensions.subjectAlternativeNames else { return }
        for name in names {
            switch name {
            case .dnsName(let dns): dnsNames.append(dns)
            case .ipAddress(let octets): addresses.append(Array(octets.bytes))
            default: continue
            }
        }
    }

    func matches(host: String) -> Bool {
        if let ip = IPAddressBytes.parse(host) { return addresses.contains(ip) }
        let wanted = host.lowercased().trimmingSuffix(".")
        return dnsNames.contains { pattern in
            let name = pattern.lowercased().trimmingSuffix(".")
            guard name.hasPrefix("*.") else { return name == wanted }
            guard let dot = wanted.firstIndex(of: ".") else { return false }
            return wanted[dot...] == name.dropFirst()
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

extension SocketAddress {
    /// Wraps a C socket address (from `getaddrinfo`).
    fileprivate init(_ address: UnsafePointer<sockaddr>, length: socklen_t) throws {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            self = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        case AF_INET6:
            self = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        default:
            throw SocketAddressError.unsupported
        }
    }
}
