import Foundation
import SwiftASN1
import Synchronization

/// The serial numbers a certificate revocation list names (`--client-crl-file`,
/// `--peer-crl-file`), read as etcd's `checkCRL` reads them with Go's `x509.ParseCRL`: a PEM
/// `X509 CRL` block or bare DER, whose revoked entries' serial numbers are compared with the
/// peer's certificates. As in etcd, the list's own signature and dates are not checked: whoever
/// can write the file decides what is revoked.
struct CertificateRevocationList: Sendable, Equatable {
    /// Each revoked serial number as unsigned big-endian bytes without leading zeros (Go's
    /// `big.Int.Bytes`), so that DER's sign byte does not make equal numbers differ.
    var revokedSerials: Set<[UInt8]>

    enum ParseError: Error, CustomStringConvertible {
        case notACertificateList(String)

        var description: String {
            switch self {
            case .notACertificateList(let reason): "not a certificate revocation list: \(reason)"
            }
        }
    }

    init(revokedSerials: Set<[UInt8]>) {
        self.revokedSerials = revokedSerials
    }

    /// Parses `bytes`: PEM when they start as Go's parser looks for it, DER otherwise.
    init(bytes: [UInt8]) throws {
        var der = bytes
        if bytes.starts(with: Array("-----BEGIN X509 CRL".utf8)) {
            let document = try PEMDocument(pemString: String(decoding: bytes, as: UTF8.self))
            guard document.discriminator == "X509 CRL" else {
                throw ParseError.notACertificateList("PEM block \(document.discriminator)")
            }
            der = document.derBytes
        }
        revokedSerials = try Self.serials(in: DER.parse(der))
    }

    /// Whether `serial` (big-endian, as a certificate carries it) is revoked.
    func isRevoked(serial: [UInt8]) -> Bool { revokedSerials.contains(Self.normalized(serial[...])) }

    static func normalized(_ bytes: ArraySlice<UInt8>) -> [UInt8] { Array(bytes.drop { $0 == 0 }) }

    /// RFC 5280's `CertificateList`: the `tbsCertList` sequence holds an optional version, the
    /// signature algorithm, the issuer, `thisUpdate`, an optional `nextUpdate`, then the optional
    /// sequence of revoked certificates, each starting with its serial number.
    private static func serials(in root: ASN1Node) throws -> Set<[UInt8]> {
        guard case .constructed(let list) = root.content, root.identifier == .sequence,
            let tbs = list.first(where: { _ in true }), case .constructed(let fields) = tbs.content,
            tbs.identifier == .sequence
        else { throw ParseError.notACertificateList("no tbsCertList sequence") }
        var remaining = Array(fields)[...]
        if remaining.first?.identifier == .integer { remaining = remaining.dropFirst() }
        // signature and issuer, then thisUpdate
        guard remaining.count >= 3, remaining.prefix(2).allSatisfy({ $0.identifier == .sequence }),
            isTime(remaining[remaining.startIndex + 2])
        else { throw ParseError.notACertificateList("malformed tbsCertList") }
        remaining = remaining.dropFirst(3)
        if let next = remaining.first, isTime(next) { remaining = remaining.dropFirst() }
        guard let revoked = remaining.first, revoked.identifier == .sequence, case .constructed(let entries) = revoked.content
        else { return [] }
        var serials: Set<[UInt8]> = []
        for entry in entries {
            guard case .constructed(let parts) = entry.content, let serial = parts.first(where: { _ in true }),
                serial.identifier == .integer, case .primitive(let bytes) = serial.content
            else { throw ParseError.notACertificateList("malformed revoked certificate entry") }
            serials.insert(normalized(bytes))
        }
        return serials
    }

    private static func isTime(_ node: ASN1Node) -> Bool {
        node.identifier == .utcTime || node.identifier == .generalizedTime
    }
}

/// A revocation list file read again whenever it changes (etcd reads it at every handshake), so
/// that a list updated in place takes effect without a restart.
final class RevocationListFile: Sendable {
    let path: String
    private struct Loaded {
        var modified: Date?
        var size: Int?
        var list: Result<CertificateRevocationList, any Error>
    }

    private let loaded: Mutex<Loaded?> = Mutex(nil)

    /// Reads `path` once; throws if it cannot be read or parsed, so that a bad file stops the
    /// start rather than every later connection.
    init(path: String) throws {
        self.path = path
        _ = try current().get()
    }

    /// The list as the file holds it now, or why it cannot be had.
    func current() -> Result<CertificateRevocationList, any Error> {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let modified = attributes?[.modificationDate] as? Date
        let size = (attributes?[.size] as? NSNumber)?.intValue
        if let cached = loaded.withLock({ $0 }), cached.modified == modified, cached.size == size, modified != nil {
            return cached.list
        }
        let list = Result { () throws -> CertificateRevocationList in
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try CertificateRevocationList(bytes: Array(data))
        }
        loaded.withLock { $0 = Loaded(modified: modified, size: size, list: list) }
        return list
    }
}
