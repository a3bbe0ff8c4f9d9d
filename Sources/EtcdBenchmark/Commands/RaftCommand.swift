import ArgumentParser
import EtcdRaft
import Foundation

/// `raft`: entries committed per second through an in-memory Raft group with no I/O at all, to
/// show that consensus itself is never the bottleneck of the server. Not a test: a measurement.
///
/// Every member keeps its log in a `MemoryStorage`, messages move through in-process queues, and
/// the loop proposes one batch on the leader per round while earlier batches are still being
/// replicated, as a busy server would. Entries count once the leader has them in a Ready's
/// committed entries (i.e. handed to the state machine).
struct RaftCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Benchmark the Raft library alone: an in-memory group, no disk, no network."
    )

    @Option(help: "Members in the group.")
    var members: Int = 3

    @Option(help: "Payload bytes per entry.")
    var entrySize: Int = 100

    @Option(help: "Entries per proposal batch (one propose(batch:) call).")
    var batch: Int = 1000

    @Option(help: "Entries to commit in total.")
    var total: Int = 2_000_000

    @Option(help: "Compact each member's log after this many applied entries (default: about 64 MB of payload).")
    var compactEvery: Int?

    /// Compacting by payload volume keeps the log's memory bounded for any entry size; without it
    /// large entries measure page faults of an ever-growing heap rather than Raft.
    var entriesPerCompaction: Int { compactEvery ?? max(1_000, 64 * 1024 * 1024 / max(entrySize, 1)) }

    @Option(name: [.customShort("w"), .customLong("write-out")], help: "Output format: simple or json.")
    var writeOut: String = "simple"

    func validate() throws {
        guard members >= 1, members <= 7 else { throw ValidationError("--members must be 1...7") }
        guard entrySize >= 0, batch >= 1, total >= 1 else { throw ValidationError("sizes must be positive") }
    }

    func run() throws {
        var group = InMemoryRaftGroup(size: members)
        group.electFirstMember()
        let startCPU = ProcessClock.cpuSeconds()
        let start = ProcessClock.nowNanoseconds()
        let run = group.commit(total: total, batch: batch, entrySize: entrySize, compactEvery: entriesPerCompaction)
        let (rounds, proposalsDropped) = (run.rounds, run.proposalsDropped)
        let elapsedSeconds = Double(ProcessClock.nowNanoseconds() - start) / 1e9
        let endCPU = ProcessClock.cpuSeconds()
        let cpuSeconds = (endCPU.user - startCPU.user) + (endCPU.system - startCPU.system)
        let committed = group.committedAtLeader
        let entriesPerSecond = Double(committed) / elapsedSeconds
        let megabytesPerSecond = entriesPerSecond * Double(entrySize) / 1_000_000
        if writeOut == "json" {
            let fields: [String: Any] = [
                "operation": "raft", "members": members, "entry_size": entrySize, "batch": batch,
                "entries_committed": committed, "elapsed_seconds": elapsedSeconds,
                "entries_per_second": entriesPerSecond, "payload_megabytes_per_second": megabytesPerSecond,
                "cpu_seconds": cpuSeconds, "rounds": rounds, "messages": group.messagesDelivered,
                "proposals_dropped": proposalsDropped,
            ]
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("Raft, in memory: \(members) members, \(entrySize)-byte entries, batches of \(batch)")
            print(String(format: "  committed:      %d entries in %.3f s", committed, elapsedSeconds))
            print(String(format: "  throughput:     %.0f entries/s (%.1f MB/s of payload)", entriesPerSecond, megabytesPerSecond))
            print(String(format: "  CPU:            %.3f s (%.2f us per entry)", cpuSeconds, cpuSeconds * 1e6 / Double(committed)))
            print("  rounds:         \(rounds), messages delivered: \(group.messagesDelivered)")
        }
    }
}

/// A Raft group in one thread: each member's Ready is persisted into its `MemoryStorage`, its
/// messages are delivered straight into the recipients, and committed entries are counted.
struct InMemoryRaftGroup {
    private var nodes: [RaftNode]
    private let storages: [MemoryStorage]
    private var inboxes: [[Message]]
    private var appliedSinceCompaction: [Int]
    private(set) var committedAtLeader = 0
    private(set) var messagesDelivered = 0

    init(size: Int) {
        let ids = (1...size).map { NodeID(UInt64($0)) }
        storages = ids.map { _ in MemoryStorage(confState: ConfState(voters: ids)) }
        nodes = []
        for (position, id) in ids.enumerated() {
            var configuration = RaftConfiguration(id: id)
            // Large appends keep the per-message overhead low, as etcd's 1 MiB default does for
            // small entries; the window is etcd's default.
            configuration.maxSizePerMessageBytes = 1024 * 1024
            nodes.append(RaftNode(configuration: configuration, storage: storages[position], random: SplitMix64(seed: id.rawValue)))
        }
        inboxes = Array(repeating: [], count: size)
        appliedSinceCompaction = Array(repeating: 0, count: size)
    }

    mutating func electFirstMember() {
        nodes[0].campaign()
        var rounds = 0
        while nodes[0].status.softState.role != .leader || nodes[0].hasReady() {
            runRound(compactEvery: Int.max)
            rounds += 1
            precondition(rounds < 1000, "raft benchmark: member 1 was not elected")
        }
        committedAtLeader = 0
    }

    /// Proposes `total` entries on member 1 in batches, keeping up to four batches uncommitted,
    /// and runs rounds until all are committed at the leader.
    mutating func commit(total: Int, batch: Int, entrySize: Int, compactEvery: Int) -> (rounds: Int, proposalsDropped: Int) {
        let target = committedAtLeader + total
        var proposed = 0
        var proposalsDropped = 0
        var rounds = 0
        while committedAtLeader < target {
            if proposed < total && proposed - (committedAtLeader - (target - total)) < 4 * batch {
                let count = min(batch, total - proposed)
                var payloads: [[UInt8]] = []
                payloads.reserveCapacity(count)
                for sequence in proposed..<(proposed + count) {
                    payloads.append([UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: entrySize))
                }
                if proposeAtLeader(payloads) {
                    proposed += count
                } else {
                    proposalsDropped += 1
                }
            }
            runRound(compactEvery: compactEvery)
            rounds += 1
            precondition(rounds <= 10 * total + 1_000, "raft benchmark made no progress after \(rounds) rounds")
        }
        return (rounds, proposalsDropped)
    }

    /// The first index every member's storage still holds (raised by compaction).
    var firstIndexes: [UInt64] { storages.map { (try? $0.firstIndex()) ?? 0 } }

    mutating func proposeAtLeader(_ payloads: [[UInt8]]) -> Bool {
        do {
            try nodes[0].propose(batch: payloads)
            return true
        } catch {
            return false
        }
    }

    /// One pass over every member: deliver its inbox, then run its Ready cycle.
    mutating func runRound(compactEvery: Int) {
        for position in nodes.indices {
            let inbox = inboxes[position]
            inboxes[position].removeAll(keepingCapacity: true)
            for message in inbox {
                try? nodes[position].step(message)
            }
            guard nodes[position].hasReady() else { continue }
            let ready = nodes[position].ready()
            let storage = storages[position]
            if let snapshot = ready.snapshot { try? storage.applySnapshot(snapshot) }
            storage.append(ready.entries)
            if let hardState = ready.hardState { storage.setHardState(hardState) }
            for message in ready.messages {
                inboxes[Int(message.to.rawValue) - 1].append(message)
                messagesDelivered += 1
            }
            var applied = 0
            for entry in ready.committedEntries where entry.type == .normal && !entry.data.isEmpty { applied += 1 }
            if position == 0 { committedAtLeader += applied }
            nodes[position].advance(ready)
            appliedSinceCompaction[position] += applied
            if appliedSinceCompaction[position] >= compactEvery, let last = ready.committedEntries.last {
                appliedSinceCompaction[position] = 0
                _ = try? storage.createSnapshot(at: last.index, data: [])
                try? storage.compact(upTo: last.index)
            }
        }
    }
}
