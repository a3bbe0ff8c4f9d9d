@testable import EtcdRaft
import Logging
import Synchronization

/// A group of in-memory Raft nodes and the network between them, driven one command at a time
/// by an interaction script (see `Testdata/README.md`), as etcd-io/raft's `rafttest`
/// InteractionEnv is.
///
/// Nothing happens on its own: messages a node emits wait in `network` until a command delivers
/// them, time moves only on tick commands, and every node draws its election timeouts from a
/// generator seeded with its ID. The same script therefore prints the same output on every run.
final class InteractionEnvironment {
    /// One node with the storage it persists to, the way an application owns both.
    struct Member {
        var node: RaftNode
        let storage: MemoryStorage
        /// The configuration the node was created with, kept for `restart`.
        let configuration: RaftConfiguration
        /// The membership as of each applied configuration change (and the snapshot it started
        /// from), so that `compact` can put the right membership in the snapshot it creates.
        var confStates: [(index: UInt64, confState: ConfState)]
    }

    /// Nodes by position: node `i + 1` is `members[i]`.
    var members: [Member] = []
    /// Messages sent and not yet delivered or dropped, in the order they were sent.
    var network: [Message] = []
    /// Nodes cut off from everyone: messages to or from them are dropped on delivery.
    var isolated: Set<NodeID> = []
    let output = InteractionOutput()

    struct CommandError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs one command and returns what it printed, log lines included.
    func run(_ command: InteractionCommand) throws(CommandError) -> [String] {
        output.reset()
        try dispatch(command)
        let lines = output.takeLines()
        return lines.isEmpty ? ["ok"] : lines
    }

    private func dispatch(_ command: InteractionCommand) throws(CommandError) {
        switch command.verb {
        case "add-nodes": try addNodes(command)
        case "campaign": try campaign(command)
        case "propose": try propose(command)
        case "propose-conf-change": try proposeConfChange(command)
        case "tick": try tick(command)
        case "tick-heartbeat": try tickHeartbeat(command)
        case "tick-election": try tickElection(command)
        case "deliver-msgs": try deliverMessages(command)
        case "process-ready": try processReady(command)
        case "stabilize": try stabilize(command)
        case "status": try status(command)
        case "raft-log": try raftLog(command)
        case "raft-state": raftState()
        case "compact": try compact(command)
        case "transfer-leadership": try transferLeadership(command)
        case "read-index": try readIndex(command)
        case "report-unreachable": try reportUnreachable(command)
        case "report-snapshot": try reportSnapshot(command)
        case "restart": try restart(command)
        case "isolate": try isolate(command)
        case "heal": heal()
        case "set-randomized-election-timeout": try setRandomizedElectionTimeout(command)
        case "log-level": try logLevel(command)
        default: throw CommandError("unknown command \(command.verb)")
        }
    }

    // MARK: - Arguments

    func nodeID(_ text: String) throws(CommandError) -> NodeID {
        guard let raw = UInt64(text), raw > 0, raw <= UInt64(members.count) else {
            throw CommandError("no node \(text) (there are \(members.count))")
        }
        return NodeID(raw)
    }

    /// The positional node IDs of a command, sorted; all nodes when `allIfEmpty` and none given.
    func nodeIDs(_ command: InteractionCommand, allIfEmpty: Bool = false) throws(CommandError) -> [NodeID] {
        var ids: [NodeID] = []
        for word in command.positional { ids.append(try nodeID(word)) }
        if ids.isEmpty && allIfEmpty { return allNodeIDs }
        return ids.sorted()
    }

    /// The one node a command acts on: its first positional argument.
    func firstNodeID(_ command: InteractionCommand) throws(CommandError) -> NodeID {
        guard let first = command.positional.first else { throw CommandError("\(command.verb): missing node ID") }
        return try nodeID(first)
    }

    var allNodeIDs: [NodeID] { members.indices.map { NodeID(UInt64($0 + 1)) } }

    func member(_ id: NodeID) -> Member { members[Int(id.rawValue) - 1] }

    /// Runs `body` on node `id` in place.
    func withNode<T>(_ id: NodeID, _ body: (inout RaftNode) throws(CommandError) -> T) throws(CommandError) -> T {
        try body(&members[Int(id.rawValue) - 1].node)
    }

    func write(_ line: String) { output.write(line) }

    private func logLevel(_ command: InteractionCommand) throws(CommandError) {
        guard let name = command.positional.first else { throw CommandError("log-level: missing level") }
        let levels: [String: Logger.Level?] = [
            "none": nil, "debug": .debug, "info": .info, "warn": .warning, "error": .error,
        ]
        guard let level = levels[name] else { throw CommandError("log-level: unknown level \(name)") }
        output.setLevel(level)
    }
}

/// What commands print, and the nodes' log lines, in the order they happen. The log handler of
/// every node writes here, so a message Raft logs while stepping appears right after the message
/// that caused it.
final class InteractionOutput: Sendable {
    private struct State {
        var lines: [String] = []
        /// Nil silences the logs.
        var level: Logger.Level? = .info
    }

    private let state = Mutex(State())

    func write(_ line: String) { state.withLock { $0.lines.append(line) } }

    func reset() { state.withLock { $0.lines.removeAll() } }

    func takeLines() -> [String] {
        state.withLock { state in
            defer { state.lines.removeAll() }
            return state.lines
        }
    }

    func setLevel(_ level: Logger.Level?) { state.withLock { $0.level = level } }

    var level: Logger.Level? { state.withLock { $0.level } }

    /// One log line: level, node, message, then the metadata in key order (the order of a
    /// `Dictionary` must never reach the output).
    func log(_ event: LogEvent) {
        guard let minimum = level, event.level >= minimum else { return }
        var metadata = event.metadata ?? [:]
        let node = metadata.removeValue(forKey: "raft_id").map { "\($0)" } ?? "?"
        var line = "\(Self.levelNames[event.level] ?? "\(event.level)") \(node) \(event.message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(metadata[key].map { "\($0)" } ?? "")"
        }
        write(line)
    }

    private static let levelNames: [Logger.Level: String] = [
        .trace: "TRACE", .debug: "DEBUG", .info: "INFO", .notice: "NOTICE", .warning: "WARN", .error: "ERROR",
        .critical: "CRITICAL",
    ]
}

/// Sends every node's log events to the shared `InteractionOutput`, which filters by the level
/// the script set with `log-level`.
struct InteractionLogHandler: LogHandler {
    let output: InteractionOutput
    var metadata: Logger.Metadata = [:]

    var logLevel: Logger.Level {
        // Let everything through to `InteractionOutput`, which applies the script's level.
        get { .trace }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { output.log(event) }
}
