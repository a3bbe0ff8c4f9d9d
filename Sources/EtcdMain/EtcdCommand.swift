import ArgumentParser
import EtcdServer
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// The `etcd` executable: etcd's flags, defaults and `ETCD_*` environment variables.
@main
struct EtcdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd",
        abstract: "swift-etcd: a distributed, reliable key-value store speaking etcd's v3 API."
    )

    @Option(name: .etcd("name"), help: "Human-readable name for this member.")
    var name: String = "default"

    @Option(name: .etcd("data-dir"), help: "Path to the data directory (default: ${name}.etcd).")
    var dataDir: String?

    @Option(name: .etcd("listen-client-urls"), help: "List of URLs to listen on for client traffic.")
    var listenClientURLs: String = "http://localhost:2379"

    @Option(name: .etcd("advertise-client-urls"), help: "List of this member's client URLs to advertise to the public.")
    var advertiseClientURLs: String = "http://localhost:2379"

    @Option(name: .etcd("listen-peer-urls"), help: "List of URLs to listen on for peer traffic.")
    var listenPeerURLs: String = "http://localhost:2380"

    @Option(name: .etcd("initial-advertise-peer-urls"), help: "List of this member's peer URLs to advertise to the rest of the cluster.")
    var initialAdvertisePeerURLs: String = "http://localhost:2380"

    @Option(name: .etcd("initial-cluster"), help: "Initial cluster configuration for bootstrapping (default: ${name}=${initial-advertise-peer-urls}).")
    var initialCluster: String?

    @Option(name: .etcd("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during bootstrap.")
    var initialClusterToken: String = "etcd-cluster"

    @Option(name: .etcd("initial-cluster-state"), help: "Initial cluster state ('new' or 'existing').")
    var initialClusterState: String = "new"

    @Option(name: .etcd("max-txn-ops"), help: "Maximum number of operations permitted in a transaction.")
    var maxTxnOps: Int = 128

    @Option(name: .etcd("max-request-bytes"), help: "Maximum client request size in bytes the server will accept.")
    var maxRequestBytes: Int = 1_572_864

    @Option(name: .etcd("snapshot-count"), help: "Number of committed transactions to trigger a snapshot to disk.")
    var snapshotCount: UInt64 = 100_000

    @Option(name: .etcd("max-wals"), help: "Maximum number of wal files to retain (0 is unlimited).")
    var maxWALs: Int = 5

    @Option(name: .etcd("max-snapshots"), help: "Maximum number of snapshot files to retain (0 is unlimited).")
    var maxSnapshots: Int = 5

    @Option(name: .etcd("wal-dir"), help: "Path to the dedicated wal directory.")
    var walDir: String?

    @Option(name: .etcd("heartbeat-interval"), help: "Time (in milliseconds) of a heartbeat interval.")
    var heartbeatInterval: Int = 100

    @Option(name: .etcd("election-timeout"), help: "Time (in milliseconds) for an election to timeout.")
    var electionTimeout: Int = 1_000

    @Option(name: .etcd("pre-vote"), help: "Enable to run an additional Raft election phase.")
    var preVote: String = "true"

    @Option(
        name: .etcd("unsafe-no-fsync"),
        help: "Disables fsync, unsafe, will cause data loss. For tests only: a machine crash can lose acknowledged writes."
    )
    var unsafeNoFsync: String = "false"

    @Option(name: .etcd("backend-batch-interval"), help: "BackendBatchInterval is the maximum time before commit the backend transaction (in milliseconds).")
    var backendBatchInterval: Int = 100

    @Option(name: .etcd("backend-batch-limit"), help: "BackendBatchLimit is the maximum operations before commit the backend transaction.")
    var backendBatchLimit: Int = 10_000

    @Option(
        name: .etcd("experimental-watch-progress-notify-interval"),
        help: "Duration of periodic watch progress notifications.")
    var experimentalWatchProgressNotifyInterval: String = "10m0s"

    @Option(
        name: .etcd("experimental-enable-lease-checkpoint"),
        help: "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change (on by default here).")
    var experimentalEnableLeaseCheckpoint: String = "true"

    @Option(
        name: .etcd("experimental-enable-lease-checkpoint-persist"),
        help: "Persist checkpointed remaining TTLs, so a restart does not reset them either (default: on with checkpoints; requires them).")
    var experimentalEnableLeaseCheckpointPersist: String = ""

    @Option(
        name: .etcd("experimental-lease-checkpoint-interval"),
        help: "Duration of periodic lease checkpoints.")
    var experimentalLeaseCheckpointInterval: String = "5m0s"

    @Option(name: .etcd("log-level"), help: "Configures log level. Only supports debug, info, warn, error, panic, or fatal.")
    var logLevel: String = "info"

    @Flag(name: .etcd("version"), help: "Print the version and exit.")
    var version = false

    func run() async throws {
        if version {
            print(
                """
                etcd Version: \(EtcdVersion.server)
                Git SHA: swift-etcd \(EtcdVersion.swiftEtcd)
                Go Version: none (Swift)
                Go OS/Arch: linux/\(Self.architecture)
                """
            )
            return
        }
        let level = try Self.parseLogLevel(logLevel)
        var logger = Logger(label: "etcd.server") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        for warning in Self.mergeEnvironment().warnings { logger.warning("\(warning)") }

        let configuration = try makeConfiguration()
        let server = EtcdServer(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    private func makeConfiguration() throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.name = name
        configuration.dataDirectory = dataDir
        configuration.listenClientURLs = try EndpointURL.parseList(listenClientURLs)
        configuration.advertiseClientURLs = try EndpointURL.parseList(advertiseClientURLs)
        configuration.listenPeerURLs = try EndpointURL.parseList(listenPeerURLs)
        configuration.initialAdvertisePeerURLs = try EndpointURL.parseList(initialAdvertisePeerURLs)
        configuration.initialCluster = initialCluster
        configuration.initialClusterToken = initialClusterToken
        guard ["new", "existing"].contains(initialClusterState) else {
            throw ValidationError("invalid value \"\(initialClusterState)\" for flag --initial-cluster-state: valid values are \"new\", \"existing\"")
        }
        configuration.initialClusterState = initialClusterState
        guard maxTxnOps > 0 else { throw ValidationError("--max-txn-ops must be positive, got \(maxTxnOps)") }
        configuration.maxTxnOperations = maxTxnOps
        guard maxRequestBytes > 0 else { throw ValidationError("--max-request-bytes must be positive, got \(maxRequestBytes)") }
        configuration.maxRequestBytes = maxRequestBytes
        configuration.snapshotCount = snapshotCount
        configuration.maxWALs = maxWALs
        configuration.maxSnapshots = maxSnapshots
        configuration.walDirectory = walDir
        configuration.heartbeatIntervalMilliseconds = heartbeatInterval
        configuration.electionTimeoutMilliseconds = electionTimeout
        configuration.preVote = try Self.parseBool(preVote, flag: "pre-vote")
        configuration.unsafeNoFsync = try Self.parseBool(unsafeNoFsync, flag: "unsafe-no-fsync")
        configuration.backendBatchIntervalMilliseconds = backendBatchInterval
        configuration.backendBatchLimit = backendBatchLimit
        let progressInterval = try Self.parseDuration(
            experimentalWatchProgressNotifyInterval, flag: "experimental-watch-progress-notify-interval")
        // As etcd: zero or less keeps the default; anything below 100 ms is raised to it.
        if progressInterval > .zero {
            configuration.watchProgressNotifyInterval = max(progressInterval, .milliseconds(100))
        }
        let checkpoints = try Self.parseBool(experimentalEnableLeaseCheckpoint, flag: "experimental-enable-lease-checkpoint")
        let persist =
            experimentalEnableLeaseCheckpointPersist.isEmpty
            ? checkpoints
            : try Self.parseBool(experimentalEnableLeaseCheckpointPersist, flag: "experimental-enable-lease-checkpoint-persist")
        if persist && !checkpoints {
            throw ValidationError(
                "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint")
        }
        // Checkpoints are always persisted when on: the remainder lives in the lease's row.
        let checkpointInterval = try Self.parseDuration(
            experimentalLeaseCheckpointInterval, flag: "experimental-lease-checkpoint-interval")
        configuration.leaseCheckpointInterval = checkpoints ? (checkpointInterval > .zero ? checkpointInterval : .seconds(300)) : nil
        try configuration.validate()
        return configuration
    }

    /// Go's `strconv.ParseBool`, which etcd's boolean flags use.
    static func parseBool(_ text: String, flag: String) throws -> Bool {
        switch text {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: throw ValidationError("invalid boolean value \"\(text)\" for -\(flag): parse error")
        }
    }

    /// etcd's duration flags take Go's duration syntax (`10m0s`, `100ms`).
    static func parseDuration(_ text: String, flag: String) throws -> Duration {
        guard let duration = GoDuration.parse(text) else {
            throw ValidationError("invalid value \"\(text)\" for flag -\(flag): parse error")
        }
        return duration
    }

    static func parseLogLevel(_ text: String) throws -> Logger.Level {
        switch text {
        case "debug": return .debug
        case "info": return .info
        case "warn": return .warning
        case "error": return .error
        case "panic", "fatal": return .critical
        default:
            throw ValidationError("invalid value \"\(text)\" for flag --log-level: only supports debug, info, warn, error, panic, or fatal")
        }
    }

    static var architecture: String {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }

    /// etcd reads every flag also from `ETCD_<FLAG>`; a flag given on the command line wins.
    static func main() async {
        do {
            var command = try parseAsRoot(mergeEnvironment().arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static func mergeEnvironment() -> EnvironmentFlags.Merged {
        EnvironmentFlags.merge(
            arguments: EnvironmentFlags.expandBareBooleans(Array(CommandLine.arguments.dropFirst()), flags: booleanFlags),
            environment: ProcessInfo.processInfo.environment,
            knownFlags: flagNames
        )
    }

    static let flagNames = [
        "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
        "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state",
        "max-txn-ops", "max-request-bytes", "log-level", "version", "snapshot-count", "max-wals", "max-snapshots",
        "wal-dir", "heartbeat-interval", "election-timeout", "pre-vote", "unsafe-no-fsync", "backend-batch-interval",
        "backend-batch-limit", "experimental-watch-progress-notify-interval", "experimental-enable-lease-checkpoint",
        "experimental-enable-lease-checkpoint-persist", "experimental-lease-checkpoint-interval",
    ]

    /// Boolean flags that, as in Go, may be given bare (`--pre-vote` means `--pre-vote=true`).
    static let booleanFlags = [
        "pre-vote", "unsafe-no-fsync", "experimental-enable-lease-checkpoint", "experimental-enable-lease-checkpoint-persist",
    ]
}

extension NameSpecification {
    /// etcd's flags take one dash or two (`-name` and `--name`), as Go's flag package does.
    static func etcd(_ flag: String) -> NameSpecification {
        [.customLong(flag), .customLong(flag, withSingleDash: true)]
    }
}
