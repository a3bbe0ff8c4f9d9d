import Foundation

/// Everything the server needs to start, with etcd 3.5's defaults.
///
/// The `etcd` executable fills this from flags and `ETCD_*` environment variables; tests build it
/// directly.
public struct ServerConfiguration: Sendable {
    /// Human-readable name of this member (`--name`).
    public var name: String = "default"
    /// Where the member keeps its data (`--data-dir`); etcd's default is `<name>.etcd`.
    public var dataDirectory: String?
    public var listenClientURLs: [EndpointURL] = [EndpointURL.defaultClient]
    public var advertiseClientURLs: [EndpointURL] = [EndpointURL.defaultClient]
    public var listenPeerURLs: [EndpointURL] = [EndpointURL.defaultPeer]
    public var initialAdvertisePeerURLs: [EndpointURL] = [EndpointURL.defaultPeer]
    /// `name=peerURL,...`; etcd's default is `<name>=<initial advertise peer URLs>`.
    public var initialCluster: String?
    public var initialClusterToken: String = "etcd-cluster"
    public var initialClusterState: String = "new"
    /// Most operations in one txn branch (`--max-txn-ops`).
    public var maxTxnOperations: Int = 128
    /// Largest request the server accepts (`--max-request-bytes`); gRPC itself takes up to
    /// 512 KiB more before refusing a message, as etcd's does.
    public var maxRequestBytes: Int = 1_572_864
    /// Most proposals waiting to be applied before new ones are refused with "too many requests";
    /// etcd refuses at 5,000 entries between commit and apply.
    public var maxPendingProposals: Int = 5_000
    /// Most log entries applied in one backend transaction.
    public var maxApplyBatch: Int = 1_000

    public init() {}

    public var effectiveDataDirectory: String { dataDirectory ?? "\(name).etcd" }

    public var effectiveInitialCluster: String {
        initialCluster ?? initialAdvertisePeerURLs.map { "\(name)=\($0)" }.joined(separator: ",")
    }

    /// The extra room gRPC gives a message over `maxRequestBytes`, so that an oversized request is
    /// answered with etcd's "request is too large" rather than a transport error.
    public static let grpcOverheadBytes = 512 * 1024
}

/// A URL as etcd's URL flags take it: `scheme://host:port`.
public struct EndpointURL: Hashable, Sendable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public static let defaultClient = EndpointURL(scheme: "http", host: "localhost", port: 2379)
    public static let defaultPeer = EndpointURL(scheme: "http", host: "localhost", port: 2380)

    public init(scheme: String, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// Parses one URL; `http` and `https` (and `unix`/`unixs`, refused later) are etcd's schemes.
    public init(parsing text: String) throws(ConfigurationError) {
        guard let separator = text.range(of: "://") else { throw .invalidURL(text, "URL scheme must be http, https, unix, or unixs") }
        let scheme = String(text[..<separator.lowerBound])
        guard ["http", "https", "unix", "unixs"].contains(scheme) else {
            throw .invalidURL(text, "URL scheme must be http, https, unix, or unixs")
        }
        var authority = String(text[separator.upperBound...])
        if let slash = authority.firstIndex(of: "/") {
            guard authority[slash...] == "/" else { throw .invalidURL(text, "URL must not contain a path") }
            authority = String(authority[..<slash])
        }
        let host: String
        let portText: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL(text, "missing ']' in host") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidURL(text, "URL address does not have the form \"host:port\"") }
            portText = rest.dropFirst()
        } else {
            guard let colon = authority.lastIndex(of: ":") else {
                throw .invalidURL(text, "URL address does not have the form \"host:port\"")
            }
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65_535).contains(port) else {
            throw .invalidURL(text, "invalid port \"\(portText)\"")
        }
        self.init(scheme: scheme, host: host, port: port)
    }

    /// A comma-separated list, as every etcd URL flag takes.
    public static func parseList(_ text: String) throws(ConfigurationError) -> [EndpointURL] {
        var urls: [EndpointURL] = []
        for part in text.split(separator: ",") {
            urls.append(try EndpointURL(parsing: part.trimmingCharacters(in: .whitespaces)))
        }
        if urls.isEmpty { throw .invalidURL(text, "no URL given") }
        return urls
    }

    public var description: String {
        host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
    }
}

/// A configuration etcd would refuse to start with.
public enum ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidURL(String, String)
    case unsupported(String)
    case invalidValue(flag: String, value: String, reason: String)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason): return "invalid URL \"\(url)\": \(reason)"
        case .unsupported(let what): return what
        case .invalidValue(let flag, let value, let reason): return "invalid value \"\(value)\" for flag --\(flag): \(reason)"
        }
    }
}

