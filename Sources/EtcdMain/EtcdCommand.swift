import EtcdServer
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// The `etcd` executable: every etcd 3.5 server flag (see `FlagTable`), with etcd's defaults,
/// `ETCD_*` environment variables, the YAML `--config-file`, and etcd's exit codes (2 for a flag
/// that does not parse, 1 for a configuration refused after parsing).
@main
enum EtcdCommand {
    static func main() async {
        let flags: FlagValues
        do {
            flags = try FlagParser.parse(
                arguments: Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
        } catch {
            // Go's flag package prints the error and a usage line, and etcd exits 2.
            printError("\(error)\nusage: etcd [flags]; see 'etcd --help'")
            exit(2)
        }
        if flags.helpRequested {
            print(helpText)
            exit(0)
        }
        if flags.isSet("version") && flags["version"] == "true" {
            print(versionLines.joined(separator: "\n"))
            exit(0)
        }

        var logger = Logger(label: "etcd.server") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = flags["debug"] == "true" ? .debug : logLevel(flags["log-level"])
        // etcdmain's first lines, which tools read to learn what they started.
        for line in versionLines { logger.info("\(line)") }
        logger.info("Running: \(CommandLine.arguments.joined(separator: " "))")
        for warning in flags.warnings { logger.warning("\(warning)") }

        let configuration: ServerConfiguration
        do {
            configuration = try ServerConfiguration(flags: flags)
            for notice in try ServerConfiguration.startupNotices(flags) { logger.warning("\(notice)") }
            try configuration.refuseUnsupportedClusterSettings()
            try configuration.validate()
        } catch {
            logger.critical("error verifying flags, \(error). See 'etcd --help'.")
            exit(1)
        }

        let server = EtcdServer(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch {
            logger.critical("etcd stopped: \(error)")
            exit(1)
        }
    }

    static func logLevel(_ text: String) -> Logger.Level {
        switch text {
        case "debug": return .debug
        case "warn": return .warning
        case "error": return .error
        case "panic", "fatal": return .critical
        default: return .info
        }
    }

    static var versionLines: [String] {
        [
            "etcd Version: \(EtcdVersion.server)",
            "Git SHA: swift-etcd \(EtcdVersion.swiftEtcd)",
            "Go Version: none (Swift)",
            "Go OS/Arch: linux/\(architecture)",
        ]
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

    /// etcd's `--help`: every flag with its default, and what this server does with it.
    static var helpText: String {
        var lines = [
            "Usage:",
            "",
            "  etcd [flags]",
            "    Start a swift-etcd server (etcd 3.5's flags; -flag and --flag both work, as does ETCD_FLAG).",
            "",
            "Flags:",
        ]
        for spec in FlagTable.all {
            lines.append("  --\(spec.name) '\(spec.defaultValue)'")
            var help = "      \(spec.help)"
            switch spec.effect {
            case .supported: break
            case .notYetEffective(let reason, _): help += " [no effect yet: \(reason)]"
            case .refused(let reason, _): help += " [refused unless default: \(reason)]"
            }
            lines.append(help)
        }
        return lines.joined(separator: "\n")
    }

    static func printError(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
