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
        return configuration
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
            arguments: Array(CommandLine.arguments.dropFirst()),
            environment: ProcessInfo.processInfo.environment,
            knownFlags: flagNames
        )
    }

    static let flagNames = [
        "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
        "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state",
        "max-txn-ops", "max-request-bytes", "log-level", "version",
    ]
}

extension NameSpecification {
    /// etcd's flags take one dash or two (`-name` and `--name`), as Go's flag package does.
    static func etcd(_ flag: String) -> NameSpecification {
        [.customLong(flag), .customLong(flag, withSingleDash: true)]
    }
}
