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
    /// swift-etcd's own (`--experimental-lean-grpc-listen-urls`): more URLs served by the lean
    /// gRPC server, whichever server the client URLs use (for side-by-side measurements).
    public var leanGRPCListenURLs: [EndpointURL] = []
    /// swift-etcd's own (`--experimental-grpc-server`): which gRPC server answers on the client
    /// URLs.
    public var grpcServer: GRPCServerKind = .lean

    /// The gRPC servers swift-etcd can put on its client URLs.
    public enum GRPCServerKind: String, Sendable {
        /// swift-etcd's own on swift-nio-http2 (`LeanRPCServerHandler`): the default.
        case lean
        /// grpc-swift 2 with its HTTP/2 transport: the fallback.
        case grpcSwift = "grpc-swift"
    }
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
    /// Most writes waiting to be applied before new ones are refused with "too many requests";
    /// etcd refuses at 5,000 entries between commit and apply.
    public var maxPendingProposals: Int = 5_000
    /// Most proposals put into one Raft Ready cycle, and so into one WAL write.
    public var maxProposalsPerCycle: Int = 1_000
    /// Applied entries between Raft snapshots (`--snapshot-count`).
    public var snapshotCount: UInt64 = 100_000
    /// WAL segment files kept beyond those still needed (`--max-wals`; 0 keeps all).
    public var maxWALs: Int = 5
    /// Snapshot files kept (`--max-snapshots`; 0 keeps all).
    public var maxSnapshots: Int = 5
    /// A separate directory for the WAL (`--wal-dir`); default `<data-dir>/member/wal`.
    public var walDirectory: String?
    /// Time of one Raft tick, the leader's heartbeat period (`--heartbeat-interval`, ms).
    public var heartbeatIntervalMilliseconds: Int = 100
    /// Time without a leader before an election (`--election-timeout`, ms).
    public var electionTimeoutMilliseconds: Int = 1_000
    /// Raft's PreVote round before elections (`--pre-vote`; etcd 3.5 turns it on by default).
    public var preVote: Bool = true
    /// Skip fsync in the WAL and backend (`--unsafe-no-fsync`). Unsafe: a machine crash can lose
    /// acknowledged writes or leave the WAL and the backend inconsistent. For tests only.
    public var unsafeNoFsync: Bool = false
    /// Longest a backend transaction stays open (`--backend-batch-interval`, ms).
    public var backendBatchIntervalMilliseconds: Int = 100
    /// Most applied entries in one backend transaction (`--backend-batch-limit`).
    public var backendBatchLimit: Int = 10_000
    /// How often watchers that asked for progress notifications get one when idle
    /// (`--experimental-watch-progress-notify-interval`; etcd raises anything below 100 ms to it).
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// How often the leader checkpoints long leases' remaining TTL through Raft
    /// (`--experimental-lease-checkpoint-interval`); nil turns checkpoints off
    /// (`--experimental-enable-lease-checkpoint=false`). On by default here, off in etcd.
    public var leaseCheckpointInterval: Duration? = .seconds(300)
    /// Most expired leases the leader revokes per second. etcd's rate is fixed at 1,000 and so
    /// is this one on the command line; tests lower it to hold expired leases awaiting
    /// revocation for long enough to observe.
    public var leaseRevocationsPerSecond: Int = 1_000
    /// How long a stop waits for in-flight requests before closing every connection. etcd waits
    /// its request timeout (7 s with default flags) for the gRPC server's graceful stop, then
    /// stops it hard; so does this, with watch and keepalive streams ended at once.
    public var shutdownGracePeriod: Duration = .seconds(7)

    // Settings parsed from etcd's flags for features still being built: each has etcd's default
    // and is logged at start as not yet effective when set otherwise (see FlagTable).

    /// Backend size that raises the NOSPACE alarm (`--quota-backend-bytes`); 0 means etcd's
    /// default of 2 GiB, and a negative value turns the quota off, as in etcd.
    public var quotaBackendBytes: Int64 = 0
    /// Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`); nil is off.
    public var autoCompaction: AutoCompaction?
    /// Most concurrent streams per client connection (`--max-concurrent-streams`).
    public var maxConcurrentStreams: UInt32 = .max
    /// Shortest interval between client pings the server tolerates (`--grpc-keepalive-min-time`).
    public var grpcKeepaliveMinTime: Duration = .seconds(5)
    /// How often the server pings an idle client (`--grpc-keepalive-interval`; zero disables).
    public var grpcKeepaliveInterval: Duration = .seconds(7_200)
    /// How long the server waits for a ping's answer (`--grpc-keepalive-timeout`).
    public var grpcKeepaliveTimeout: Duration = .seconds(20)
    /// Most revisions one compaction batch deletes (`--experimental-compaction-batch-limit`).
    public var compactionBatchLimit: Int = 1000
    /// Pause between compaction batches (`--experimental-compaction-sleep-interval`).
    public var compactionSleepInterval: Duration = .milliseconds(10)
    /// Refuse membership changes that would lose quorum (`--strict-reconfig-check`).
    public var strictReconfigCheck: Bool = true
    /// `--auth-token`: `simple`, or `jwt,pub-key=...,priv-key=...,sign-method=...`.
    public var authToken: String = "simple"
    /// bcrypt cost for auth passwords (`--bcrypt-cost`, 4...31).
    public var bcryptCost: Int = 10
    /// Lifetime of a simple auth token (`--auth-token-ttl`, seconds).
    public var authTokenTTLSeconds: Int = 300
    /// `--client-cert-auth`: clients must present a certificate the trusted CA signed, and with
    /// auth on, its CommonName names the user of a call that carries no token (the client side's
    /// TLS setting, ``TLSSettings/clientCertAuth``).
    public var clientCertAuth: Bool {
        get { clientTLS.clientCertAuth }
        set { clientTLS.clientCertAuth = newValue }
    }
    /// Where metrics and health are served apart from the client URLs (`--listen-metrics-urls`).
    public var listenMetricsURLs: [EndpointURL] = []
    /// `--metrics`: `basic` or `extensive`.
    public var metrics: String = "basic"
    /// Check the store's hash against the peers' before serving (`--experimental-initial-corrupt-check`).
    public var initialCorruptCheck: Bool = false
    /// Period of the cluster-wide hash check (`--experimental-corrupt-check-time`; zero is off).
    public var corruptCheckTime: Duration = .zero
    /// Leader's periodic check of compaction hashes (`--experimental-compact-hash-check-enabled`, `-time`).
    public var compactHashCheckEnabled: Bool = false
    public var compactHashCheckTime: Duration = .seconds(60)
    /// Fast-forward election ticks at boot (`--initial-election-tick-advance`).
    public var initialElectionTickAdvance: Bool = true
    /// An apply slower than this is logged (`--experimental-warning-apply-duration`).
    public var warningApplyDuration: Duration = .milliseconds(100)
    /// A unary request slower than this is logged (`--experimental-warning-unary-request-duration`).
    public var warningUnaryRequestDuration: Duration = .milliseconds(300)
    /// Entries kept after a snapshot for slow followers (`--experimental-snapshot-catchup-entries`).
    public var snapshotCatchUpEntries: UInt64 = 5_000
    /// Most learners in the membership (`--experimental-max-learners`).
    public var maxLearners: Int = 1
    /// Defragment at boot when it frees at least this much (`--experimental-bootstrap-defrag-threshold-megabytes`).
    public var bootstrapDefragThresholdMegabytes: UInt64 = 0
    /// Serve the JSON gateway on the client URLs (`--enable-grpc-gateway`).
    public var enableGRPCGateway: Bool = true
    /// TLS on the client URLs (`--cert-file`, `--key-file`, `--trusted-ca-file`, ...), on the peer
    /// URLs (`--peer-*`), and what both share (versions, cipher suites); see ``TLSSettings``.
    public var clientTLS = TLSSettings()
    public var peerTLS = TLSSettings()
    public var tlsProtocol = TLSProtocolSettings()

    public init() {}

    public var effectiveDataDirectory: String { dataDirectory ?? "\(name).etcd" }

    /// `<data-dir>/member`, where the backend, the WAL and the snapshots live.
    public var memberDirectory: String {
        let base = effectiveDataDirectory.hasSuffix("/") ? String(effectiveDataDirectory.dropLast()) : effectiveDataDirectory
        return base + "/member"
    }

    /// How long a request may wait for Raft: etcd's `ReqTimeout`, 5 s plus two election timeouts.
    public var requestTimeout: Duration { .seconds(5) + .milliseconds(2 * electionTimeoutMilliseconds) }

    /// Checks the Raft timing flags as etcd does at start.
    public func validate() throws(ConfigurationError) {
        guard heartbeatIntervalMilliseconds > 0 else {
            throw .invalidValue(flag: "heartbeat-interval", value: "\(heartbeatIntervalMilliseconds)", reason: "must be positive")
        }
        // Divided rather than multiplied: any heartbeat a flag can hold must not overflow here.
        guard heartbeatIntervalMilliseconds <= electionTimeoutMilliseconds / 5 else {
            throw .invalidValue(
                flag: "election-timeout", value: "\(electionTimeoutMilliseconds)",
                reason: "--election-timeout[\(electionTimeoutMilliseconds)ms] should be at least as 5 times as "
                    + "--heartbeat-interval[\(heartbeatIntervalMilliseconds)ms]")
        }
        guard electionTimeoutMilliseconds <= 50_000 else {
            throw .invalidValue(
                flag: "election-timeout", value: "\(electionTimeoutMilliseconds)",
                reason: "--election-timeout[\(electionTimeoutMilliseconds)ms] is too long, and should be set less than 50 seconds")
        }
        guard snapshotCount > 0 else {
            throw .invalidValue(flag: "snapshot-count", value: "\(snapshotCount)", reason: "must be positive")
        }
        guard maxWALs >= 0, maxSnapshots >= 0 else {
            throw .invalidValue(flag: "max-wals", value: "\(maxWALs)/\(maxSnapshots)", reason: "must not be negative")
        }
        guard backendBatchIntervalMilliseconds > 0, backendBatchLimit > 0 else {
            throw .invalidValue(
                flag: "backend-batch-limit", value: "\(backendBatchLimit)",
                reason: "backend batch interval and limit must be positive")
        }
        try validateTLS()
    }

    public var effectiveInitialCluster: String {
        initialCluster ?? initialAdvertisePeerURLs.map { "\(name)=\($0)" }.joined(separator: ",")
    }

    /// The extra room gRPC gives a message over `maxRequestBytes`, so that an oversized request is
    /// answered with etcd's "request is too large" rather than a transport error.
    public static let grpcOverheadBytes = 512 * 1024

    /// The largest gRPC message accepted: `--max-request-bytes` plus gRPC's margin, saturating
    /// (the flag takes any unsigned value, as etcd's does).
    public var maxMessageBytes: Int {
        let (sum, overflow) = maxRequestBytes.addingReportingOverflow(Self.grpcOverheadBytes)
        return overflow ? .max : sum
    }
}

/// etcd's automatic compaction: keep a window of time, or a number of revisions.
public enum AutoCompaction: Sendable, Hashable {
    case periodic(Duration)
    case revision(Int64)
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
    /// A check etcd makes after parsing, with etcd's own message.
    case invalid(String)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason): return "invalid URL \"\(url)\": \(reason)"
        case .unsupported(let what): return what
        case .invalidValue(let flag, let value, let reason): return "invalid value \"\(value)\" for flag --\(flag): \(reason)"
        case .invalid(let message): return message
        }
    }
}

