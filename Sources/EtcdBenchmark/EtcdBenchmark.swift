import ArgumentParser
import Foundation

/// `etcd-benchmark`: etcd's `tools/benchmark`, so that its figures mean the same thing, plus the
/// tool's own CPU cost and connection health in every report.
@main
struct EtcdBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd-benchmark",
        abstract: "A low-level benchmark tool for etcd3 (modelled on etcd's tools/benchmark).",
        subcommands: [
            PutCommand.self, RangeCommand.self, TxnPutCommand.self, TxnMixedCommand.self, WatchCommand.self,
            WatchLatencyCommand.self, WatchMixedCommand.self, LeaseKeepAliveCommand.self, RaftCommand.self,
        ]
    )

    /// etcd's benchmark takes its global flags before the subcommand (`--clients 16 put`), as
    /// cobra's persistent flags allow; ArgumentParser wants a subcommand's options after its name.
    /// Moving everything before the subcommand name to just after it accepts both orders.
    static func main() async {
        let names = Set(configuration.subcommands.compactMap { $0.configuration.commandName } + ["help"])
        let arguments = hoistingGlobalOptions(Array(CommandLine.arguments.dropFirst()), subcommands: names)
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static func hoistingGlobalOptions(_ arguments: [String], subcommands: Set<String>) -> [String] {
        guard let position = arguments.firstIndex(where: { subcommands.contains($0) }), position > 0 else {
            return arguments
        }
        return [arguments[position]] + arguments[..<position] + arguments[(position + 1)...]
    }
}

/// Prints a phase's reports: etcd's text (each preceded by its heading), or one JSON object.
func emit(_ reports: [(heading: String?, report: Report)], options: GlobalOptions, extra: [String: Any] = [:]) {
    switch options.writeOut {
    case .simple:
        for entry in reports {
            if let heading = entry.heading {
                print(heading, terminator: "")
            }
            print(entry.report.text())
        }
        for key in extra.keys.sorted() {
            print("\(key): \(extra[key] ?? "")")
        }
    case .json:
        var object: [String: Any]
        if reports.count == 1, let only = reports.first {
            object = only.report.json()
        } else {
            object = ["reports": reports.map { $0.report.json() }]
        }
        object.merge(extra) { _, new in new }
        print(renderJSON(object))
    }
}

/// Writes to stderr, for notes that must not mix with a JSON report on stdout.
func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
