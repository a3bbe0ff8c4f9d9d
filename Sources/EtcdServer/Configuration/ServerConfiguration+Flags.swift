import EtcdAuth
import Foundation

extension ServerConfiguration {
    /// The configuration etcd's flags describe, checked as etcd checks them after parsing.
    ///
    /// Flags the server cannot honour safely refuse to start here (see ``startupNotices(_:)``);
    /// `validate()` is left to the caller, as before.
    public init(flags: FlagValues) throws(ConfigurationError) {
        self.init()
        name = flags["name"]
        if flags.isSet("data-dir") { dataDirectory = flags["data-dir"] }
        if flags.isSet("wal-dir"), !flags["wal-dir"].isEmpty { walDirectory = flags["wal-dir"] }
        listenClientURLs = try EndpointURL.parseList(flags["listen-client-urls"])
        advertiseClientURLs = try EndpointURL.parseList(flags["advertise-client-urls"])
        listenPeerURLs = try EndpointURL.parseList(flags["listen-peer-urls"])
        initialAdvertisePeerURLs = try EndpointURL.parseList(flags["initial-advertise-peer-urls"])
        if !flags["listen-metrics-urls"].isEmpty { listenMetricsURLs = try EndpointURL.parseList(flags["listen-metrics-urls"]) }
        if !flags["experimental-lean-grpc-listen-urls"].isEmpty {
            leanGRPCListenURLs = try EndpointURL.parseList(flags["experimental-lean-grpc-listen-urls"])
        }
        grpcServer = flags["experimental-grpc-server"] == "grpc-swift" ? .grpcSwift : .lean
        if flags.isSet("initial-cluster") { initialCluster = flags["initial-cluster"] }
        initialClusterToken = flags["initial-cluster-token"]
        initialClusterState = flags["initial-cluster-state"]

        maxTxnOperations = Self.integer(flags, "max-txn-ops")
        guard maxTxnOperations > 0 else { throw .invalid("--max-txn-ops must be positive, got \(maxTxnOperations)") }
        maxRequestBytes = Self.integer(flags, "max-request-bytes")
        guard maxRequestBytes > 0 else { throw .invalid("--max-request-bytes must be positive, got \(maxRequestBytes)") }
        snapshotCount = UInt64(Self.integer(flags, "snapshot-count"))
        maxWALs = Self.integer(flags, "max-wals")
        maxSnapshots = Self.integer(flags, "max-snapshots")
        heartbeatIntervalMilliseconds = Self.integer(flags, "heartbeat-interval")
        electionTimeoutMilliseconds = Self.integer(flags, "election-timeout")
        preVote = Self.bool(flags, "pre-vote")
        unsafeNoFsync = Self.bool(flags, "unsafe-no-fsync")
        // As etcd's backend: zero keeps the default interval and limit.
        let batchInterval = Self.duration(flags, "backend-batch-interval")
        if batchInterval > .zero { backendBatchIntervalMilliseconds = max(1, Int(batchInterval / .milliseconds(1))) }
        let batchLimit = Self.integer(flags, "backend-batch-limit")
        if batchLimit != 0 { backendBatchLimit = batchLimit }

        // As etcd: zero or less keeps the default; anything below 100 ms is raised to it.
        let progressInterval = Self.duration(flags, "experimental-watch-progress-notify-interval")
        if progressInterval > .zero { watchProgressNotifyInterval = max(progressInterval, .milliseconds(100)) }
        let checkpoints = Self.bool(flags, "experimental-enable-lease-checkpoint")
        let persist = flags["experimental-enable-lease-checkpoint-persist"].isEmpty
            ? checkpoints : Self.bool(flags, "experimental-enable-lease-checkpoint-persist")
        if persist && !checkpoints {
            throw .invalid("setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint")
        }
        // Checkpoints are always persisted when on: the remainder lives in the lease's row.
        let checkpointInterval = Self.duration(flags, "experimental-lease-checkpoint-interval")
        leaseCheckpointInterval = checkpoints ? (checkpointInterval > .zero ? checkpointInterval : .seconds(300)) : nil

        try readPendingFeatures(flags)
        try readTLS(flags)
    }

    /// The flags of features still being built: parsed and checked now, so later work only wires them.
    private mutating func readPendingFeatures(_ flags: FlagValues) throws(ConfigurationError) {
        quotaBackendBytes = Int64(Self.integer(flags, "quota-backend-bytes"))
        autoCompaction = try Self.autoCompaction(mode: flags["auto-compaction-mode"], retention: flags["auto-compaction-retention"])
        maxConcurrentStreams = UInt32(clamping: Self.integer(flags, "max-concurrent-streams"))
        grpcKeepaliveMinTime = Self.duration(flags, "grpc-keepalive-min-time")
        grpcKeepaliveInterval = Self.duration(flags, "grpc-keepalive-interval")
        grpcKeepaliveTimeout = Self.duration(flags, "grpc-keepalive-timeout")
        compactionBatchLimit = Self.integer(flags, "experimental-compaction-batch-limit")
        compactionSleepInterval = Self.duration(flags, "experimental-compaction-sleep-interval")
        strictReconfigCheck = Self.bool(flags, "strict-reconfig-check")
        authToken = flags["auth-token"]
        try Self.checkAuthToken(authToken)
        bcryptCost = Self.integer(flags, "bcrypt-cost")
        // etcd's auth store refuses a cost bcrypt does not take.
        guard (4...31).contains(bcryptCost) else {
            throw .invalidValue(flag: "bcrypt-cost", value: "\(bcryptCost)", reason: "must be between 4 and 31")
        }
        // etcd takes a TTL of 0 as its default.
        authTokenTTLSeconds = Self.integer(flags, "auth-token-ttl")
        if authTokenTTLSeconds <= 0 { authTokenTTLSeconds = 300 }
        metrics = flags["metrics"]
        initialCorruptCheck = Self.bool(flags, "experimental-initial-corrupt-check")
        corruptCheckTime = Self.duration(flags, "experimental-corrupt-check-time")
        compactHashCheckEnabled = Self.bool(flags, "experimental-compact-hash-check-enabled")
        compactHashCheckTime = Self.duration(flags, "experimental-compact-hash-check-time")
        initialElectionTickAdvance = Self.bool(flags, "initial-election-tick-advance")
        warningApplyDuration = Self.duration(flags, "experimental-warning-apply-duration")
        warningUnaryRequestDuration = Self.duration(flags, "experimental-warning-unary-request-duration")
        snapshotCatchUpEntries = UInt64(Self.integer(flags, "experimental-snapshot-catchup-entries"))
        maxLearners = Self.integer(flags, "experimental-max-learners")
        bootstrapDefragThresholdMegabytes = UInt64(Self.integer(flags, "experimental-bootstrap-defrag-threshold-megabytes"))
        enableGRPCGateway = Self.bool(flags, "enable-grpc-gateway")
    }

    /// etcd's retention: revisions in `revision` mode; in `periodic` mode a Go duration, or a
    /// bare number of hours. Zero turns automatic compaction off.
    static func autoCompaction(mode: String, retention: String) throws(ConfigurationError) -> AutoCompaction? {
        switch mode {
        case "periodic":
            if let hours = Int64(retention) { return hours == 0 ? nil : .periodic(.seconds(hours * 3_600)) }
            guard let window = GoDuration.parse(retention) else {
                throw .invalid("error parsing CompactionRetention: time: invalid duration \"\(retention)\"")
            }
            return window == .zero ? nil : .periodic(window)
        case "revision":
            guard let revisions = Int64(retention) else {
                throw .invalid("error parsing CompactionRetention: strconv.ParseInt: parsing \"\(retention)\": invalid syntax")
            }
            return revisions == 0 ? nil : .revision(revisions)
        default:
            throw .invalid("unknown auto-compaction-mode \"\(mode)\"")
        }
    }

    /// etcd's token providers: `simple`, or `jwt` with its options; anything else is refused.
    static func checkAuthToken(_ token: String) throws(ConfigurationError) {
        let kind = token.split(separator: ",", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard kind == "simple" || kind == "jwt" else {
            throw .invalidValue(flag: "auth-token", value: token, reason: "unknown token type (auth: invalid auth options)")
        }
        do {
            _ = try JWTOptions.parse(token)
        } catch {
            throw .invalidValue(flag: "auth-token", value: token, reason: "\(error)")
        }
    }

    /// What to tell at start about the flags given, and whether to start at all: a flag whose
    /// feature is missing and that would be unsafe or surprising to ignore refuses to start; one
    /// that is merely not effective yet gets one warning line.
    public static func startupNotices(_ flags: FlagValues) throws(ConfigurationError) -> [String] {
        var notices: [String] = []
        for spec in FlagTable.all where flags.isSet(spec.name) && !spec.isHarmless(flags[spec.name]) {
            let value = flags[spec.name]
            switch spec.effect {
            case .supported:
                continue
            case .refused(let reason, _):
                throw .unsupported("--\(spec.name)=\(value) is not supported yet: \(reason)")
            case .notYetEffective(let reason, _):
                notices.append("flag --\(spec.name)=\(value) is accepted but has no effect yet: \(reason)")
            }
        }
        for flag in ["listen-client-urls", "listen-peer-urls", "advertise-client-urls"] {
            for url in try EndpointURL.parseList(flags[flag]) where url.scheme.hasPrefix("unix") {
                throw .unsupported(
                    "--\(flag)=\(url) is not supported yet: \(url.scheme) needs unix sockets, which are not built; "
                        + "serving it as plain TCP would be surprising or unsafe")
            }
        }
        return notices
    }

    /// Refuses cluster settings that need peers: an `--initial-cluster` naming other members, and
    /// joining an existing cluster. etcd joins through its peers when the member has no data yet;
    /// with no peer traffic that is impossible, so only a restart (the flag is then ignored, as
    /// etcd ignores it) may name `existing`.
    /// The cluster flags are consistent (this member is in `--initial-cluster`, with its
    /// advertised peer URLs), as etcd checks before it starts.
    public func refuseUnsupportedClusterSettings() throws(ConfigurationError) {
        _ = try MemberIdentity.resolve(self)
    }

    // The values were checked by type when parsed; these read them back.
    private static func integer(_ flags: FlagValues, _ flag: String) -> Int {
        Int(clamping: FlagValues.parseInteger(flags[flag]) ?? 0)
    }

    private static func bool(_ flags: FlagValues, _ flag: String) -> Bool {
        FlagValues.parseBool(flags[flag]) ?? false
    }

    private static func duration(_ flags: FlagValues, _ flag: String) -> Duration {
        GoDuration.parse(flags[flag]) ?? .zero
    }
}
