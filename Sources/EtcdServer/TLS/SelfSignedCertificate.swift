import Crypto
import Foundation
import Logging
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--auto-tls` and `--peer-auto-tls`: a self-signed certificate made at start, as etcd's
/// `transport.SelfCert` makes it: an ECDSA P-521 key, Organization `etcd`, the listen URLs'
/// hosts as subject alternative names, valid for `--self-signed-cert-validity` years, written to
/// `<data-dir>/fixtures/client` (or `fixtures/peer`) as `cert.pem` and `key.pem`. Files already
/// there are used as they are, so a restart keeps the certificate clients may have pinned.
enum SelfSignedCertificate {
    /// The settings with ``TLSSettings/certFile`` and ``TLSSettings/keyFile`` pointing at the
    /// certificate in `directory`, made first if missing. Settings that name certificate files
    /// are returned unchanged, with etcd's warning that auto TLS is then ignored.
    static func resolve(
        _ settings: TLSSettings, directory: String, hosts: [String], validityYears: Int, side: String, logger: Logger
    ) throws -> TLSSettings {
        guard settings.autoTLS else { return settings }
        guard settings.isEmpty else {
            logger.warning("ignoring \(side) auto TLS since certs given")
            return settings
        }
        let certPath = directory + "/cert.pem"
        let keyPath = directory + "/key.pem"
        let files = FileManager.default
        if !(files.fileExists(atPath: certPath) && files.fileExists(atPath: keyPath)) {
            try files.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let (certificate, key) = try make(hosts: hosts, validityYears: validityYears, now: Date())
            try Data(certificate.utf8).write(to: URL(fileURLWithPath: certPath))
            logger.info("created cert file", metadata: ["path": "\(certPath)"])
            // The key is readable by its owner only, as etcd writes it.
            guard files.createFile(atPath: keyPath, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: keyPath])
            }
            logger.info("created key file", metadata: ["path": "\(keyPath)"])
        }
        var resolved = settings
        resolved.certFile = certPath
        resolved.keyFile = keyPath
        resolved.isSelfSigned = true
        return resolved
    }

    /// A new certificate and its key, both PEM. `hosts` are `host:port` or bare hosts; an IP
    /// becomes an IP address name, anything else a DNS name (etcd's split).
    static func make(hosts: [String], validityYears: Int, now: Date) throws -> (certificate: String, key: String) {
        let key = P521.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName { OrganizationName("etcd") }
        var alternativeNames: [GeneralName] = []
        for host in hosts {
            if let address = IPAddressBytes.parse(host) {
                alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: address[...])))
            } else if !host.isEmpty {
                alternativeNames.append(.dnsName(host))
            }
        }
        let names = alternativeNames
        let usage = try ExtendedKeyUsage([.serverAuth])
        let extensions = try Certificate.Extensions {
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
            usage
            Critical(BasicConstraints.notCertificateAuthority)
            if !names.isEmpty { SubjectAlternativeNames(names) }
        }
        // etcd's serial: a random number below 2^128.
        var serial = (0..<16).map { _ in UInt8.random(in: 0 ... .max) }
        serial[0] &= 0x7f
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: serial), publicKey: privateKey.publicKey,
            notValidBefore: now, notValidAfter: now.addingTimeInterval(Double(validityYears) * 365 * 24 * 3_600),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA512, extensions: extensions,
            issuerPrivateKey: privateKey)
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }
}

/// An IP address's bytes, as certificates carry them (4 for IPv4, 16 for IPv6).
enum IPAddressBytes {
    /// The bytes of `text` if it is an IP address (an IPv6 one may be in brackets); nil otherwise.
    static func parse(_ text: String) -> [UInt8]? {
        var host = text
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
