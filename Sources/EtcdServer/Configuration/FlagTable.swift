/// Every server flag of etcd 3.5 (and the 3.4 ones 3.5 dropped), with etcd's type, default and
/// what this server does with it.
///
/// The flags are a table rather than one property each: about 120 flags share four behaviours
/// (parse by type, take `ETCD_*` and config-file values, warn when set to no effect, refuse when
/// unsafe), and one row per flag keeps the decision for each visible in one place, where the
/// README's flag tables are checked against it.
public struct FlagSpec: Sendable, Hashable {
    public var name: String
    public var kind: FlagKind
    /// etcd's default, as etcd's `--help` shows it and as this parser reads it.
    public var defaultValue: String
    public var effect: FlagEffect
    public var help: String

    public init(_ name: String, _ kind: FlagKind, _ defaultValue: String, _ effect: FlagEffect, _ help: String) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.effect = effect
        self.help = help
    }
}

/// The Go type of an etcd flag, which decides what a value must look like.
public enum FlagKind: Sendable, Hashable {
    case string
    /// Go's `strconv.ParseBool`; a bare `--flag` means true.
    case bool
    /// Go's `uint`: no sign.
    case unsigned
    /// etcd's `Uint32Value` (`--max-concurrent-streams`).
    case unsigned32
    case integer
    /// Go's `time.ParseDuration` syntax.
    case duration
    /// Comma-separated URLs, each checked as etcd checks them.
    case urls
    /// Comma-separated strings.
    case strings
    /// etcd's `SelectiveStringValue`: one of the listed words.
    case choice([String])
}

/// What this server does with a flag.
public enum FlagEffect: Sendable, Hashable {
    /// Works as in etcd.
    case supported
    /// Accepted and parsed, but the feature is not built: a value other than those listed (the
    /// default always among them) is logged once at start as having no effect yet.
    case notYetEffective(String, harmless: [String] = [])
    /// Accepted only at a value in `allowed` (the default always among them); any other refuses to
    /// start, because ignoring it would be unsafe or surprising.
    case refused(String, allowed: [String] = [])
}

extension FlagSpec {
    /// Whether `value` is one this server treats as the default (no warning, no refusal).
    func isHarmless(_ value: String) -> Bool {
        if FlagValues.sameValue(value, defaultValue, kind: kind) { return true }
        switch effect {
        case .supported: return true
        case .notYetEffective(_, let harmless), .refused(_, let harmless):
            return harmless.contains { FlagValues.sameValue(value, $0, kind: kind) }
        }
    }
}

public enum FlagTable {
    public static let byName: [String: FlagSpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    // swift-format-ignore
    public static let all: [FlagSpec] = [
        FlagSpec("config-file", .string, "", .supported, "Path to the server configuration file; other flags and environment variables are then ignored."),
        // member
        FlagSpec("name", .string, "default", .supported, "Human-readable name for this member."),
        FlagSpec("data-dir", .string, "${name}.etcd", .supported, "Path to the data directory."),
        FlagSpec("wal-dir", .string, "", .supported, "Path to the dedicated wal directory."),
        FlagSpec("snapshot-count", .unsigned, "100000", .supported, "Number of committed transactions to trigger a snapshot to disk."),
        FlagSpec("heartbeat-interval", .unsigned, "100", .supported, "Time (in milliseconds) of a heartbeat interval."),
        FlagSpec("election-timeout", .unsigned, "1000", .supported, "Time (in milliseconds) for an election to timeout."),
        FlagSpec("initial-election-tick-advance", .bool, "true", .notYetEffective("elections are not fast-forwarded at boot"), "Whether to fast-forward initial election ticks on boot for faster election."),
        FlagSpec("listen-peer-urls", .urls, "http://localhost:2380", .supported, "List of URLs to listen on for peer traffic."),
        FlagSpec("listen-client-urls", .urls, "http://localhost:2379", .supported, "List of URLs to listen on for client traffic."),
        FlagSpec("listen-metrics-urls", .urls, "", .supported, "List of URLs to listen on for the metrics and health endpoints."),
        FlagSpec("max-snapshots", .unsigned, "5", .supported, "Maximum number of snapshot files to retain (0 is unlimited)."),
        FlagSpec("max-wals", .unsigned, "5", .supported, "Maximum number of wal files to retain (0 is unlimited)."),
        FlagSpec("quota-backend-bytes", .integer, "0", .supported, "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."),
        FlagSpec("backend-bbolt-freelist-type", .string, "map", .notYetEffective("the backend is SQLite, not bbolt", harmless: ["array", "map"]), "BackendFreelistType specifies the type of freelist that boltdb backend uses."),
        FlagSpec("backend-batch-interval", .duration, "100ms", .supported, "BackendBatchInterval is the maximum time before commit the backend transaction."),
        FlagSpec("backend-batch-limit", .integer, "10000", .supported, "BackendBatchLimit is the maximum operations before commit the backend transaction."),
        FlagSpec("max-txn-ops", .unsigned, "128", .supported, "Maximum number of operations permitted in a transaction."),
        FlagSpec("max-request-bytes", .unsigned, "1572864", .supported, "Maximum client request size in bytes the server will accept."),
        FlagSpec("max-concurrent-streams", .unsigned32, "4294967295", .supported, "Maximum concurrent streams that each client can open at a time."),
        FlagSpec("grpc-keepalive-min-time", .duration, "5s", .supported, "Minimum interval duration that a client should wait before pinging server."),
        FlagSpec("grpc-keepalive-interval", .duration, "2h", .supported, "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
        FlagSpec("grpc-keepalive-timeout", .duration, "20s", .supported, "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
        FlagSpec("socket-reuse-port", .bool, "false", .notYetEffective("listeners do not set SO_REUSEPORT"), "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use."),
        FlagSpec("socket-reuse-address", .bool, "false", .notYetEffective("listeners do not set SO_REUSEADDR"), "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in TIME_WAIT state."),
        FlagSpec("raft-read-timeout", .duration, "5s", .notYetEffective("the peer transport's timeouts are its own: 5 s to write a frame, 5 s for a handshake"), "Read timeout set on each rafthttp connection."),
        FlagSpec("raft-write-timeout", .duration, "5s", .notYetEffective("the peer transport's timeouts are its own: 5 s to write a frame, 5 s for a handshake"), "Write timeout set on each rafthttp connection."),
        // clustering
        FlagSpec("initial-advertise-peer-urls", .urls, "http://localhost:2380", .supported, "List of this member's peer URLs to advertise to the rest of the cluster."),
        FlagSpec("initial-cluster", .string, "default=http://localhost:2380", .supported, "Initial cluster configuration for bootstrapping."),
        FlagSpec("initial-cluster-state", .choice(["new", "existing"]), "new", .supported, "Initial cluster state ('new' or 'existing')."),
        FlagSpec("initial-cluster-token", .string, "etcd-cluster", .supported, "Initial cluster token for the etcd cluster during bootstrap."),
        FlagSpec("advertise-client-urls", .urls, "http://localhost:2379", .supported, "List of this member's client URLs to advertise to the public."),
        FlagSpec("discovery", .string, "", .refused("discovery is not built yet; the member would not join the cluster it names"), "Discovery URL used to bootstrap the cluster."),
        FlagSpec("discovery-fallback", .choice(["exit", "proxy"]), "proxy", .notYetEffective("discovery is not built yet", harmless: ["exit", "proxy"]), "Expected behavior ('exit' or 'proxy') when discovery services fails."),
        FlagSpec("discovery-proxy", .string, "", .notYetEffective("discovery is not built yet"), "HTTP proxy to use for traffic to discovery service."),
        FlagSpec("discovery-srv", .string, "", .refused("DNS discovery is not built yet; the member would not join the cluster it names"), "DNS srv domain used to bootstrap the cluster."),
        FlagSpec("discovery-srv-name", .string, "", .refused("DNS discovery is not built yet; the member would not join the cluster it names"), "Suffix to the dns srv name queried when bootstrapping."),
        FlagSpec("strict-reconfig-check", .bool, "true", .supported, "Reject reconfiguration requests that would cause quorum loss."),
        FlagSpec("pre-vote", .bool, "true", .supported, "Enable to run an additional Raft election phase."),
        FlagSpec("auto-compaction-retention", .string, "0", .supported, "Auto compaction retention length. 0 means disable auto compaction."),
        FlagSpec("auto-compaction-mode", .string, "periodic", .supported, "Interpret 'auto-compaction-retention' one of: periodic|revision."),
        FlagSpec("enable-v2", .bool, "false", .refused("the v2 API is not served; a v2 client would find nothing there"), "Accept etcd V2 client requests. Deprecated."),
        FlagSpec("v2-deprecation", .choice(["not-yet", "write-only", "write-only-drop-data", "gone"]), "not-yet", .notYetEffective("there is no v2 store: every stage behaves as 'gone'", harmless: ["not-yet", "write-only", "write-only-drop-data", "gone"]), "Phase of v2store deprecation."),
        FlagSpec("experimental-enable-v2v3", .string, "", .notYetEffective("the v2 API is not served"), "v3 prefix for serving emulated v2 state."),
        // proxy (etcd's v2 proxy)
        FlagSpec("proxy", .choice(["off", "readonly", "on"]), "off", .refused("the v2 proxy is not built; this member would serve as a full member instead"), "Proxy mode setting ('off', 'readonly' or 'on')."),
        FlagSpec("proxy-failure-wait", .unsigned, "5000", .notYetEffective("the v2 proxy is not built"), "Time (in milliseconds) an endpoint will be held in a failed state."),
        FlagSpec("proxy-refresh-interval", .unsigned, "30000", .notYetEffective("the v2 proxy is not built"), "Time (in milliseconds) of the endpoints refresh interval."),
        FlagSpec("proxy-dial-timeout", .unsigned, "1000", .notYetEffective("the v2 proxy is not built"), "Time (in milliseconds) for a dial to timeout."),
        FlagSpec("proxy-write-timeout", .unsigned, "5000", .notYetEffective("the v2 proxy is not built"), "Time (in milliseconds) for a write to timeout."),
        FlagSpec("proxy-read-timeout", .unsigned, "0", .notYetEffective("the v2 proxy is not built"), "Time (in milliseconds) for a read to timeout."),
        // security
        FlagSpec("cert-file", .string, "", .supported, "Path to the client server TLS cert file."),
        FlagSpec("key-file", .string, "", .supported, "Path to the client server TLS key file."),
        FlagSpec("client-cert-auth", .bool, "false", .supported, "Enable client cert authentication."),
        FlagSpec("client-crl-file", .string, "", .supported, "Path to the client certificate revocation list file."),
        FlagSpec("client-cert-allowed-hostname", .string, "", .supported, "Allowed TLS hostname for client cert authentication."),
        FlagSpec("trusted-ca-file", .string, "", .supported, "Path to the client server TLS trusted CA cert file."),
        FlagSpec("client-cert-file", .string, "", .supported, "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required."),
        FlagSpec("client-key-file", .string, "", .supported, "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required."),
        FlagSpec("auto-tls", .bool, "false", .supported, "Client TLS using generated certificates."),
        FlagSpec("peer-cert-file", .string, "", .supported, "Path to the peer server TLS cert file."),
        FlagSpec("peer-key-file", .string, "", .supported, "Path to the peer server TLS key file."),
        FlagSpec("peer-client-cert-auth", .bool, "false", .supported, "Enable peer client cert authentication."),
        FlagSpec("peer-trusted-ca-file", .string, "", .supported, "Path to the peer server TLS trusted CA file."),
        FlagSpec("peer-client-cert-file", .string, "", .supported, "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required."),
        FlagSpec("peer-client-key-file", .string, "", .supported, "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required."),
        FlagSpec("peer-auto-tls", .bool, "false", .supported, "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."),
        FlagSpec("peer-crl-file", .string, "", .supported, "Path to the peer certificate revocation list file."),
        FlagSpec("peer-cert-allowed-cn", .string, "", .supported, "Required CN for client certs connecting to the peer endpoint."),
        FlagSpec("peer-cert-allowed-hostname", .string, "", .supported, "Allowed TLS hostname for inter peer authentication."),
        FlagSpec("self-signed-cert-validity", .unsigned, "1", .supported, "The validity period of the client and peer certificates that are automatically generated by etcd, unit is year."),
        FlagSpec("cipher-suites", .strings, "", .supported, "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)."),
        FlagSpec("tls-min-version", .choice(["TLS1.2", "TLS1.3"]), "TLS1.2", .supported, "Minimum TLS version supported by etcd."),
        FlagSpec("tls-max-version", .choice(["", "TLS1.2", "TLS1.3"]), "", .supported, "Maximum TLS version supported by etcd (empty will be auto-populated by Go)."),
        FlagSpec("experimental-peer-skip-client-san-verification", .bool, "false", .supported, "Skip verification of SAN field in client certificate for peer connections."),
        FlagSpec("cors", .strings, "*", .notYetEffective("the HTTP endpoints do not send CORS headers"), "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all)."),
        FlagSpec("host-whitelist", .strings, "*", .notYetEffective("the HTTP endpoints do not check the Host header"), "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."),
        // auth
        FlagSpec("auth-token", .string, "simple", .supported, "Specify a v3 authentication token type and its options ('simple' or 'jwt')."),
        FlagSpec("bcrypt-cost", .unsigned, "10", .supported, "Specify the cost/strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31."),
        FlagSpec("auth-token-ttl", .unsigned, "300", .supported, "Time (in seconds) of the auth-token-ttl."),
        // profiling, monitoring and logging
        FlagSpec("enable-pprof", .bool, "false", .notYetEffective("there are no profiling endpoints"), "Enable runtime profiling data via HTTP server."),
        FlagSpec("metrics", .string, "basic", .notYetEffective("the basic metrics are exported; 'extensive' adds no gRPC latency histograms yet", harmless: ["basic"]), "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."),
        FlagSpec("enable-grpc-gateway", .bool, "true", .supported, "Enable GRPC gateway."),
        FlagSpec("logger", .choice(["zap", "capnslog"]), "zap", .notYetEffective("logs are written by swift-log in its own format", harmless: ["zap", "capnslog"]), "Currently only supports 'zap' for structured logging."),
        FlagSpec("log-outputs", .strings, "default", .notYetEffective("logs go to standard error", harmless: ["stderr"]), "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."),
        FlagSpec("log-output", .strings, "default", .notYetEffective("logs go to standard error", harmless: ["stderr"]), "Deprecated in etcd 3.4 for --log-outputs; gone in 3.5."),
        FlagSpec("log-level", .choice(["debug", "info", "warn", "error", "panic", "fatal"]), "info", .supported, "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
        FlagSpec("log-format", .choice(["json", "console"]), "json", .notYetEffective("logs are written by swift-log in its own format", harmless: ["json", "console"]), "Configures log format. Only supports json, console."),
        FlagSpec("enable-log-rotation", .bool, "false", .notYetEffective("logs go to standard error, with no rotation"), "Enable log rotation of a single log-outputs file target."),
        FlagSpec("log-rotation-config-json", .string, #"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#, .notYetEffective("logs go to standard error, with no rotation"), "Configures log rotation if enabled with a JSON logger config."),
        FlagSpec("debug", .bool, "false", .supported, "Deprecated in etcd 3.4 for --log-level=debug; gone in 3.5."),
        FlagSpec("log-package-levels", .string, "", .notYetEffective("there are no per-package log levels"), "Deprecated in etcd 3.4; gone in 3.5."),
        // distributed tracing
        FlagSpec("experimental-enable-distributed-tracing", .bool, "false", .notYetEffective("tracing is not built"), "Enable experimental distributed tracing using OpenTelemetry Tracing."),
        FlagSpec("experimental-distributed-tracing-address", .string, "localhost:4317", .notYetEffective("tracing is not built"), "Address for distributed tracing used for OpenTelemetry Tracing."),
        FlagSpec("experimental-distributed-tracing-service-name", .string, "etcd", .notYetEffective("tracing is not built"), "Configures service name for distributed tracing."),
        FlagSpec("experimental-distributed-tracing-instance-id", .string, "", .notYetEffective("tracing is not built"), "Configures service instance ID for distributed tracing."),
        FlagSpec("experimental-distributed-tracing-sampling-rate", .integer, "0", .notYetEffective("tracing is not built"), "Number of samples to collect per million spans for OpenTelemetry Tracing."),
        // experimental
        FlagSpec("experimental-initial-corrupt-check", .bool, "false", .supported, "Enable to check data corruption before serving any client/peer traffic."),
        FlagSpec("experimental-corrupt-check-time", .duration, "0s", .supported, "Duration of time between cluster corruption check passes."),
        FlagSpec("experimental-compact-hash-check-enabled", .bool, "false", .notYetEffective("the check of hashes after each compaction is not built"), "Enable leader to periodically check followers compaction hashes."),
        FlagSpec("experimental-compact-hash-check-time", .duration, "1m", .notYetEffective("the check of hashes after each compaction is not built"), "Duration of time between leader checks followers compaction hashes."),
        FlagSpec("experimental-enable-lease-checkpoint", .bool, "true", .supported, "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change (on by default here; off in etcd)."),
        FlagSpec("experimental-enable-lease-checkpoint-persist", .bool, "", .supported, "Persist checkpointed remaining TTLs (default: follows --experimental-enable-lease-checkpoint; requires it)."),
        FlagSpec("experimental-lease-checkpoint-interval", .duration, "5m", .supported, "Duration of periodic lease checkpoints."),
        FlagSpec("experimental-compaction-batch-limit", .integer, "1000", .supported, "Sets the maximum revisions deleted in each compaction batch."),
        FlagSpec("experimental-compaction-sleep-interval", .duration, "10ms", .supported, "Sets the sleep interval between each compaction batch."),
        FlagSpec("experimental-watch-progress-notify-interval", .duration, "10m", .supported, "Duration of periodic watch progress notifications."),
        FlagSpec("experimental-warning-apply-duration", .duration, "100ms", .notYetEffective("slow applies are not reported"), "Time duration after which a warning is generated if request takes more time."),
        FlagSpec("experimental-warning-unary-request-duration", .duration, "300ms", .notYetEffective("slow requests are not reported"), "Time duration after which a warning is generated if a unary request takes more time."),
        FlagSpec("experimental-bootstrap-defrag-threshold-megabytes", .unsigned, "0", .notYetEffective("there is no defragmentation at boot"), "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space."),
        FlagSpec("experimental-memory-mlock", .bool, "false", .notYetEffective("memory is not locked"), "Enable to enforce etcd pages (in particular bbolt) to stay in RAM."),
        FlagSpec("experimental-txn-mode-write-with-shared-buffer", .bool, "true", .notYetEffective("write transactions always read the shared buffer"), "Enable the write transaction to use a shared buffer in its read processes."),
        FlagSpec("experimental-snapshot-catchup-entries", .unsigned, "5000", .supported, "Number of entries for a slow follower to catch up after compacting the raft storage entries."),
        FlagSpec("experimental-stop-grpc-service-on-defrag", .bool, "false", .notYetEffective("defragmentation does not stop the gRPC health service"), "Enable etcd gRPC service to stop serving client requests on defragmentation."),
        FlagSpec("experimental-grpc-server", .choice(["lean", "grpc-swift"]), "lean", .supported, "swift-etcd only: the gRPC server on --listen-client-urls: 'lean' (swift-etcd's own on swift-nio-http2) or 'grpc-swift' (the fallback)."),
        FlagSpec("experimental-lean-grpc-listen-urls", .urls, "", .supported, "swift-etcd only, for side-by-side measurements: more URLs served by the lean gRPC server whichever server --listen-client-urls uses."),
        FlagSpec("experimental-max-learners", .integer, "1", .supported, "Sets the maximum number of learners that can be available in the cluster membership."),
        FlagSpec("experimental-downgrade-check-time", .duration, "5s", .notYetEffective("downgrades are not built"), "Duration of time between two downgrade status checks."),
        FlagSpec("experimental-wait-cluster-ready-timeout", .duration, "5s", .notYetEffective("clients are served once this member has published itself through Raft, however long that takes"), "Maximum duration to wait for the cluster to be ready."),
        FlagSpec("experimental-backend-bbolt-freelist-type", .string, "map", .notYetEffective("the backend is SQLite, not bbolt", harmless: ["array", "map"]), "The etcd 3.4 name of --backend-bbolt-freelist-type."),
        // unsafe
        FlagSpec("unsafe-no-fsync", .bool, "false", .supported, "Disables fsync, unsafe, will cause data loss."),
        FlagSpec("force-new-cluster", .bool, "false", .refused("rewriting the membership is not built; the data would be served as it stands"), "Force to create a new one member cluster."),
        FlagSpec("version", .bool, "false", .supported, "Print the version and exit."),
    ]
}
