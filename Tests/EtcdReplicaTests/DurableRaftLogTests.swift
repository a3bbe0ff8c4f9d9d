import EtcdRaft
import EtcdReplica
import EtcdWAL
import Foundation
import Testing

/// The member's Raft log on disk: a single-member RaftNode runs on it, the log is closed (as by
/// a crash after the last sync) and reopened, and a new node must continue where it stopped.
@Suite struct DurableRaftLogTests {
    /// A member driven through the Ready contract on a `DurableRaftLog`.
    struct Member {
        var node: RaftNode
        let log: DurableRaftLog
        var applied: [String] = []
        var appliedIndex: UInt64 = 0

        init(log: DurableRaftLog, applied: UInt64) {
            var configuration = RaftConfiguration(id: NodeID(1))
            configuration.applied = applied
            node = RaftNode(configuration: configuration, storage: log.storage, random: SplitMix64(seed: 1))
            self.log = log
            appliedIndex = applied
        }

        mutating func runReadies() throws {
            var cycles = 0
            while node.hasReady() {
                cycles += 1
                precondition(cycles < 100, "ready loop did not settle")
                let ready = node.ready()
                try log.persist(ready)
                for entry in ready.committedEntries {
                    switch entry.type {
                    case .confChange:
                        if let change = ConfChange(encoded: entry.data) { node.applyConfChange(change) }
                    case .normal:
                        if !entry.data.isEmpty { applied.append(String(decoding: entry.data, as: UTF8.self)) }
                    }
                    appliedIndex = entry.index
                }
                node.advance(ready)
            }
        }

        mutating func elect() throws {
            try runReadies()
            node.campaign()
            try runReadies()
            #expect(node.status.softState.role == .leader)
        }

        mutating func write(_ values: [String]) throws {
            for value in values {
                try node.propose(Array(value.utf8))
                try runReadies()
            }
        }
    }

    static func withMemberDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("raftlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    static let metadata = Array("member 1 of cluster 7".utf8)

    @Test("a restart finds the entries, hard state and membership, and the node carries on")
    func restartContinues() throws {
        try Self.withMemberDirectory { directory in
            let configuration = DurableRaftLog.Configuration(memberDirectory: directory)
            do {
                let (log, restored) = try DurableRaftLog.open(configuration, metadata: Self.metadata)
                #expect(restored.isNew)
                try log.bootstrap(voters: [NodeID(1)])
                var member = Member(log: log, applied: 0)
                try member.elect()
                try member.write(["a", "b", "c"])
                #expect(member.applied == ["a", "b", "c"])
                try log.close()
            }
            let (log, restored) = try DurableRaftLog.open(configuration, metadata: [])
            #expect(!restored.isNew)
            #expect(restored.metadata == Self.metadata)
            // Bootstrap entry 1, the leader's empty entry 2, then a, b, c.
            #expect(restored.lastIndex == 5)
            #expect(restored.hardState.commit == 5)
            // Bootstrap writes term 1; the first election moves to term 2, as on a fresh etcd.
            #expect(restored.hardState.term == 2)
            #expect(restored.snapshot == nil)
            var member = Member(log: log, applied: 0)
            try member.runReadies()
            // Everything is handed out again (no snapshot yet), membership included.
            #expect(member.applied == ["a", "b", "c"])
            #expect(member.node.status.confState.voters == [NodeID(1)])
            try member.elect()
            #expect(member.node.status.hardState.term == 3)
            try member.write(["d"])
            #expect(member.applied == ["a", "b", "c", "d"])
            try log.close()
        }
    }

    @Test("snapshots compact the log, release WAL segments, and a restart resumes after the snapshot")
    func snapshotThenRestart() throws {
        try Self.withMemberDirectory { directory in
            var configuration = DurableRaftLog.Configuration(memberDirectory: directory)
            configuration.catchUpEntries = 2
            configuration.maxWALs = 1
            configuration.maxSnapshots = 2
            configuration.walOptions = WALOptions(segmentSizeBytes: 4096)
            var snapshotIndex: UInt64 = 0
            do {
                let (log, _) = try DurableRaftLog.open(configuration, metadata: Self.metadata)
                try log.bootstrap(voters: [NodeID(1)])
                var member = Member(log: log, applied: 0)
                try member.elect()
                for round in 0..<3 {
                    try member.write((0..<40).map { "v\(round)-\($0)-" + String(repeating: "x", count: 60) })
                    let snapshot = try #require(
                        try log.createSnapshot(at: member.appliedIndex, confState: member.node.status.confState))
                    snapshotIndex = snapshot.metadata.index
                }
                #expect(try log.storage.firstIndex() == snapshotIndex - 2 + 1, "catch-up entries kept")
                try member.write(["after-1", "after-2"])
                try log.close()
            }
            let walFiles = try FileManager.default.contentsOfDirectory(atPath: configuration.walDirectory)
                .filter { $0.hasSuffix(".wal") }
            #expect(!walFiles.contains("0000000000000000-0000000000000000.wal"), "old segments purged: \(walFiles)")
            let snapFiles = try FileManager.default.contentsOfDirectory(atPath: configuration.snapshotDirectory)
            #expect(snapFiles.filter { $0.hasSuffix(".snap") }.count == 2)

            // A snapshot file whose WAL marker never made it to disk (crash in between) is ignored.
            let orphan = Snapshot(
                metadata: SnapshotMetadata(index: 10_000, term: 9, confState: ConfState(voters: [NodeID(1)])))
            try Snapshotter(directory: configuration.snapshotDirectory).save(orphan)

            let (log, restored) = try DurableRaftLog.open(configuration, metadata: [])
            let snapshot = try #require(restored.snapshot)
            #expect(snapshot.metadata.index == snapshotIndex)
            #expect(try log.storage.firstIndex() == snapshotIndex + 1)
            var member = Member(log: log, applied: snapshotIndex)
            try member.runReadies()
            #expect(member.applied == ["after-1", "after-2"])
            #expect(member.node.status.confState.voters == [NodeID(1)])
            try member.elect()
            try log.close()
        }
    }
}
