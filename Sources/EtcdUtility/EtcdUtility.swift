import ArgumentParser
import EtcdServer
import Foundation
import Logging

/// `etcdutl`: etcd's offline utility, for swift-etcd's own files. `etcdctl snapshot save`
/// against a swift-etcd member writes a file that etcd's etcdutl cannot read (the backend is
/// SQLite, not bbolt); this reads and restores it.
@main
struct EtcdUtility: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcdutl",
        abstract: "An administrative command line tool for swift-etcd's files.",
        subcommands: [Snapshot.self, Version.self]
    )
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints the version of etcdutl.")

    func run() {
        print("etcdutl version: \(EtcdVersion.server)")
        print("API version: 3.5")
    }
}

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manages swift-etcd node snapshots.", subcommands: [Status.self, Restore.self])
}

/// etcdutl's output formats for `snapshot status`.
enum OutputFormat: String, ExpressibleByArgument {
    case simple, json, table
}

extension Snapshot {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Gets backend snapshot status of a given file.")

        @Argument(help: "The snapshot file (written by `etcdctl snapshot save`).")
        var file: String

        @Option(name: [.customShort("w"), .customLong("write-out")], help: "Output format: simple, json or table.")
        var format: OutputFormat = .simple

        func run() throws {
            let status: SavedSnapshot.Status
            do {
                status = try SavedSnapshot(path: file).status()
            } catch {
                throw Failure(text: "\(error)")
            }
            let hash = String(status.hash, radix: 16)
            let size = humanBytes(status.totalSize)
            switch format {
            case .simple:
                print("\(hash), \(status.revision), \(status.totalKey), \(size)")
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
            case .table:
                print(table(header: ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                            row: [hash, "\(status.revision)", "\(status.totalKey)", size]))
            }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restores a swift-etcd member snapshot to a new data directory, for a member of a new cluster.")

        @Argument(help: "The snapshot file (written by `etcdctl snapshot save`).")
        var file: String

        @Option(name: .customLong("data-dir"), help: "Path to the output data directory (default: <name>.etcd).")
        var dataDirectory: String?

        @Option(name: .customLong("wal-dir"), help: "Path to the WAL directory (default: inside the data directory).")
        var walDirectory: String?

        @Option(name: .customLong("name"), help: "Human-readable name for this member.")
        var name = "default"

        @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for restore bootstrap.")
        var initialCluster: String?

        @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during restore bootstrap.")
        var initialClusterToken = "etcd-cluster"

        @Option(name: .customLong("initial-advertise-peer-urls"), help: "List of this member's peer URLs to advertise to the rest of the cluster.")
        var initialAdvertisePeerURLs = "http://localhost:2380"

        @Flag(name: .customLong("skip-hash-check"), help: "Ignore snapshot integrity hash value (required if copied from data directory).")
        var skipHashCheck = false

        func run() throws {
            var configuration = ServerConfiguration()
            configuration.name = name
            configuration.dataDirectory = dataDirectory
            configuration.walDirectory = walDirectory
            configuration.initialCluster = initialCluster
            configuration.initialClusterToken = initialClusterToken
            do {
                configuration.initialAdvertisePeerURLs = try EndpointURL.parseList(initialAdvertisePeerURLs)
                let logger = Logger(label: "etcdutl") { StreamLogHandler.standardError(label: $0) }
                try SavedSnapshot(path: file).restore(into: configuration, skipHashCheck: skipHashCheck, logger: logger)
            } catch {
                throw Failure(text: "\(error)")
            }
        }
    }
}

/// A failure printed as etcdutl prints one ("Error: ...") with exit status 1.
struct Failure: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}

/// Sizes as Go's humanize.Bytes prints them (SI units; one decimal below 10).
func humanBytes(_ bytes: Int64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    if bytes < 10 { return "\(bytes) B" }
    let exponent = min(Int(log(Double(bytes)) / log(1000.0)), units.count - 1)
    let value = Double(bytes) / pow(1000.0, Double(exponent))
    let rounded = (value * 10).rounded() / 10
    let number = rounded < 10 ? String(format: "%.1f", rounded) : String(format: "%.0f", value.rounded())
    return number + " " + units[exponent]
}

/// A one-row table in the style etcdctl and etcdutl print (numbers to the right, text to the left).
func table(header: [String], row: [String]) -> String {
    let widths = zip(header, row).map { max($0.count, $1.count) + 2 }
    let rule = "+" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "+") + "+"
    func line(_ cells: [String], centered: Bool) -> String {
        "|" + zip(cells, widths).map { cell, width in
            let padding = width - cell.count
            let numeric = !cell.isEmpty && cell.allSatisfy(\.isNumber)
            let left = centered ? padding / 2 : (numeric ? padding - 1 : 1)
            return String(repeating: " ", count: left) + cell + String(repeating: " ", count: padding - left)
        }.joined(separator: "|") + "|"
    }
    return [rule, line(header, centered: true), rule, line(row, centered: false), rule].joined(separator: "\n")
}
