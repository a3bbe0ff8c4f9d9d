@testable import EtcdRaft
import Testing

@Suite struct MemoryStorageUnitTests {
    /// Entries 4...6 with term == index, behind a dummy entry at index 3 of term 3 (etcd-io/raft's
    /// storage_test.go layout).
    static func makeCompacted() -> MemoryStorage {
        let memberStorage = MemoryStorage()
        memberStorage.append((1...6).map { Entry(term: $0, index: $0) })
        try? memberStorage.compact(upTo: 3)
        return memberStorage
    }

    @Test("term(at:) answers from the dummy index to the last index")
    func term() throws {
        let memberStorage = Self.makeCompacted()
        #expect(throws: RaftStorageError.compacted) { try memberStorage.term(at: 2) }
        #expect(try memberStorage.term(at: 3) == 3)
        #expect(try memberStorage.term(at: 4) == 4)
        #expect(try memberStorage.term(at: 6) == 6)
        #expect(throws: RaftStorageError.unavailable) { try memberStorage.term(at: 7) }
        #expect(try memberStorage.firstIndex() == 4)
        #expect(try memberStorage.lastIndex() == 6)
    }

    @Test("entries(from:to:maxBytes:) returns [low, high) within the byte limit, at least one entry")
    func entriesInRange() throws {
        let memberStorage = Self.makeCompacted()
        let size = Entry(term: 0, index: 0).sizeBytes
        #expect(throws: RaftStorageError.compacted) { try memberStorage.entries(from: 2, to: 6, maxBytes: Int.max) }
        #expect(throws: RaftStorageError.compacted) { try memberStorage.entries(from: 3, to: 4, maxBytes: Int.max) }
        #expect(try memberStorage.entries(from: 4, to: 5, maxBytes: Int.max).map(\.index) == [4])
        #expect(try memberStorage.entries(from: 4, to: 7, maxBytes: Int.max).map(\.index) == [4, 5, 6])
        #expect(try memberStorage.entries(from: 4, to: 7, maxBytes: 0).map(\.index) == [4])
        #expect(try memberStorage.entries(from: 4, to: 7, maxBytes: size * 2).map(\.index) == [4, 5])
        #expect(try memberStorage.entries(from: 4, to: 7, maxBytes: size * 3 - 1).map(\.index) == [4, 5])
        #expect(try memberStorage.entries(from: 4, to: 7, maxBytes: size * 3).map(\.index) == [4, 5, 6])
        #expect(throws: RaftStorageError.unavailable) { try memberStorage.entries(from: 4, to: 8, maxBytes: Int.max) }
        // Only the dummy entry: nothing is available.
        #expect(throws: RaftStorageError.unavailable) { try MemoryStorage().entries(from: 1, to: 1, maxBytes: Int.max) }
    }

    @Test("compact(upTo:) keeps the entry at the index as the new dummy")
    func compact() throws {
        let memberStorage = Self.makeCompacted()
        #expect(throws: RaftStorageError.compacted) { try memberStorage.compact(upTo: 2) }
        #expect(throws: RaftStorageError.compacted) { try memberStorage.compact(upTo: 3) }
        try memberStorage.compact(upTo: 4)
        #expect(try memberStorage.firstIndex() == 5)
        #expect(try memberStorage.term(at: 4) == 4)
        #expect(try memberStorage.entries(from: 5, to: 7, maxBytes: Int.max).map(\.index) == [5, 6])
        try memberStorage.compact(upTo: 6)
        #expect(try memberStorage.firstIndex() == 7)
        #expect(try memberStorage.lastIndex() == 6)
        #expect(try memberStorage.term(at: 6) == 6)
    }

    @Test("createSnapshot records the term and membership at an index; older ones are refused")
    func createSnapshot() throws {
        let memberStorage = Self.makeCompacted()
        let confState = ConfState(voters: [nid(1), nid(2), nid(3)])
        let snapshot = try memberStorage.createSnapshot(at: 5, confState: confState, data: [1, 2])
        #expect(snapshot == Snapshot(metadata: SnapshotMetadata(index: 5, term: 5, confState: confState), data: [1, 2]))
        #expect(try memberStorage.snapshot() == snapshot)
        #expect(throws: RaftStorageError.snapshotOutOfDate) { try memberStorage.createSnapshot(at: 5, data: []) }
        #expect(throws: RaftStorageError.snapshotOutOfDate) { try memberStorage.createSnapshot(at: 4, data: []) }
        // Without an explicit membership the one last given to setConfState is recorded (the
        // membership as of the applied index); creating does not compact.
        let learnerAdded = ConfState(voters: [nid(1), nid(2), nid(3)], learners: [nid(4)])
        memberStorage.setConfState(learnerAdded)
        let next = try memberStorage.createSnapshot(at: 6, data: [3])
        #expect(next.metadata.confState == learnerAdded)
        #expect(try memberStorage.firstIndex() == 4)
        #expect(try memberStorage.initialState().confState == learnerAdded)
    }

    @Test("applySnapshot replaces the whole log; an older snapshot is refused")
    func applySnapshot() throws {
        let memberStorage = MemoryStorage()
        let confState = ConfState(voters: [nid(1)], learners: [nid(2)])
        try memberStorage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 4, term: 4, confState: confState), data: [4]))
        #expect(try memberStorage.firstIndex() == 5)
        #expect(try memberStorage.lastIndex() == 4)
        #expect(try memberStorage.term(at: 4) == 4)
        #expect(try memberStorage.initialState().confState == confState)
        #expect(throws: RaftStorageError.snapshotOutOfDate) {
            try memberStorage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 3, term: 3)))
        }
        #expect(throws: RaftStorageError.snapshotOutOfDate) {
            try memberStorage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 4, term: 4)))
        }
    }

    struct AppendCase: Sendable, CustomTestStringConvertible {
        var appended: [[UInt64]]
        var result: [[UInt64]]
        var testDescription: String { "append \(appended)" }
    }

    @Test(
        "append replaces a conflicting suffix and skips entries at or below the compaction point",
        arguments: [
            // (index, term) pairs over a log holding 3, 4, 5 with term == index behind dummy 3.
            AppendCase(appended: [[3, 3], [4, 4], [5, 5]], result: [[3, 3], [4, 4], [5, 5]]),
            AppendCase(appended: [[3, 3], [4, 6], [5, 6]], result: [[3, 3], [4, 6], [5, 6]]),
            AppendCase(appended: [[3, 3], [4, 4], [5, 5], [6, 5]], result: [[3, 3], [4, 4], [5, 5], [6, 5]]),
            // Incoming entries below the compaction point are dropped, then the rest replaces 4 and 5.
            AppendCase(appended: [[2, 3], [3, 3], [4, 5]], result: [[3, 3], [4, 5]]),
            AppendCase(appended: [[4, 5]], result: [[3, 3], [4, 5]]),
            AppendCase(appended: [[6, 5]], result: [[3, 3], [4, 4], [5, 5], [6, 5]]),
            // Everything already compacted: nothing changes.
            AppendCase(appended: [[1, 9], [2, 9]], result: [[3, 3], [4, 4], [5, 5]]),
        ]
    )
    func append(_ testCase: AppendCase) throws {
        let memberStorage = MemoryStorage()
        memberStorage.append((1...5).map { Entry(term: $0, index: $0) })
        try memberStorage.compact(upTo: 3)
        memberStorage.append(testCase.appended.map { Entry(term: $0[1], index: $0[0]) })
        let last = try memberStorage.lastIndex()
        var found: [[UInt64]] = []
        for index in 3...last { found.append([index, try memberStorage.term(at: index)]) }
        #expect(found == testCase.result)
    }

    @Test("append with a gap after the last entry is a broken invariant and traps")
    func appendGapTraps() async {
        await #expect(processExitsWith: .failure) {
            let memberStorage = MemoryStorage()
            memberStorage.append([Entry(term: 1, index: 1)])
            memberStorage.append([Entry(term: 1, index: 3)])
        }
    }

    @Test("the hard state and membership set are what initialState returns")
    func initialState() throws {
        let memberStorage = MemoryStorage(confState: ConfState(voters: [nid(3), nid(1)]))
        memberStorage.setHardState(HardState(term: 2, vote: nid(1), commit: 0))
        let (hardState, confState) = try memberStorage.initialState()
        #expect(hardState == HardState(term: 2, vote: nid(1), commit: 0))
        #expect(confState.voters == [nid(1), nid(3)])
    }
}
