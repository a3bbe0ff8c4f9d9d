@testable import EtcdRaft
import Testing

/// `RaftLog` and `UnstableLog`: the log Raft sees, stable entries in storage followed by
/// unstable ones, with the commit and applied indexes.
@Suite struct RaftLogUnitTests {
    /// A log whose storage holds `terms` at 1..., compacted through `compactedThrough`, with
    /// `unstable` terms appended after.
    static func makeLog(
        terms: [UInt64],
        compactedThrough: UInt64 = 0,
        unstable: [UInt64] = [],
        dataBytes: Int = 0,
        maxCommittedBytesPerReady: Int = Int.max
    ) -> RaftLog {
        let memberStorage = MemoryStorage(confState: ConfState(voters: [nid(1)]))
        memberStorage.append(
            terms.enumerated().map {
                Entry(term: $0.element, index: UInt64($0.offset + 1), data: [UInt8](repeating: 1, count: dataBytes))
            }
        )
        if compactedThrough > 0 { try? memberStorage.compact(upTo: compactedThrough) }
        var log = RaftLog(storage: memberStorage, maxCommittedBytesPerReady: maxCommittedBytesPerReady)
        let first = UInt64(terms.count) + 1
        log.append(
            unstable.enumerated().map {
                Entry(term: $0.element, index: first + UInt64($0.offset), data: [UInt8](repeating: 1, count: dataBytes))
            }
        )
        return log
    }

    /// (index, term) pairs, the way etcd-io/raft's tables write entries.
    static func pairs(_ list: [(UInt64, UInt64)]) -> [Entry] {
        list.map { Entry(term: $0.1, index: $0.0) }
    }

    struct ConflictCase: Sendable, CustomTestStringConvertible {
        var entries: [[UInt64]]
        var conflict: UInt64
        var testDescription: String { "\(entries) -> \(conflict)" }
    }

    @Test(
        "findConflict returns the first index whose term differs or that is missing, else 0",
        arguments: [
            ConflictCase(entries: [], conflict: 0),
            ConflictCase(entries: [[1, 1], [2, 2], [3, 3]], conflict: 0),
            ConflictCase(entries: [[2, 2], [3, 3]], conflict: 0),
            ConflictCase(entries: [[3, 3]], conflict: 0),
            ConflictCase(entries: [[1, 1], [2, 2], [3, 3], [4, 4], [5, 4]], conflict: 4),
            ConflictCase(entries: [[2, 2], [3, 3], [4, 4], [5, 4]], conflict: 4),
            ConflictCase(entries: [[3, 3], [4, 4], [5, 4]], conflict: 4),
            ConflictCase(entries: [[4, 4], [5, 4]], conflict: 4),
            ConflictCase(entries: [[1, 4], [2, 4]], conflict: 1),
            ConflictCase(entries: [[2, 1], [3, 4], [4, 4]], conflict: 2),
            ConflictCase(entries: [[3, 1], [4, 2], [5, 4], [6, 4]], conflict: 3),
        ]
    )
    func findConflict(_ testCase: ConflictCase) {
        let log = Self.makeLog(terms: [1, 2, 3])
        #expect(log.findConflict(Self.pairs(testCase.entries.map { ($0[0], $0[1]) })) == testCase.conflict)
    }

    @Test("findConflictByTerm finds the last index at or below `index` whose term is at most `term`")
    func findConflictByTerm() {
        let log = Self.makeLog(terms: [1, 3, 3, 3, 5, 5, 5])
        #expect(log.findConflictByTerm(index: 7, term: 5) == (7, 5))
        #expect(log.findConflictByTerm(index: 7, term: 6) == (7, 5))
        #expect(log.findConflictByTerm(index: 7, term: 4) == (4, 3))
        #expect(log.findConflictByTerm(index: 7, term: 3) == (4, 3))
        #expect(log.findConflictByTerm(index: 7, term: 2) == (1, 1))
        #expect(log.findConflictByTerm(index: 3, term: 2) == (1, 1))
        #expect(log.findConflictByTerm(index: 7, term: 0) == (0, 0))
        // Beyond the log the term is unknown: the index itself may match.
        #expect(log.findConflictByTerm(index: 10, term: 3) == (10, 0))

        let compacted = Self.makeLog(terms: [1, 3, 3, 3, 5], compactedThrough: 3)
        #expect(compacted.findConflictByTerm(index: 5, term: 4) == (4, 3))
        #expect(compacted.findConflictByTerm(index: 5, term: 3) == (4, 3))
        // The dummy entry at 3 has term 3 > 1; below it the answer is unknown.
        #expect(compacted.findConflictByTerm(index: 5, term: 1) == (2, 0))
    }

    struct MaybeAppendCase: Sendable, CustomTestStringConvertible {
        var logTerm: UInt64
        var index: UInt64
        var committed: UInt64
        var entries: [[UInt64]]
        var lastNew: UInt64?
        var commit: UInt64
        var terms: [UInt64]
        var testDescription: String { "after (\(index), \(logTerm)) commit \(committed) entries \(entries)" }
    }

    @Test(
        "maybeAppend appends after a matching entry, truncates conflicts, and moves commit up to the last new entry",
        arguments: [
            // The previous entry does not match: nothing changes.
            MaybeAppendCase(logTerm: 2, index: 3, committed: 3, entries: [[4, 4]], lastNew: nil, commit: 1, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 3, index: 4, committed: 3, entries: [[5, 4]], lastNew: nil, commit: 1, terms: [1, 2, 3]),
            // Matches the last entry.
            MaybeAppendCase(logTerm: 3, index: 3, committed: 3, entries: [], lastNew: 3, commit: 3, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 4, entries: [], lastNew: 3, commit: 3, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 2, entries: [], lastNew: 3, commit: 2, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 0, entries: [], lastNew: 3, commit: 1, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 0, index: 0, committed: 3, entries: [], lastNew: 0, commit: 1, terms: [1, 2, 3]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 3, entries: [[4, 4]], lastNew: 4, commit: 3, terms: [1, 2, 3, 4]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 4, entries: [[4, 4]], lastNew: 4, commit: 4, terms: [1, 2, 3, 4]),
            MaybeAppendCase(logTerm: 3, index: 3, committed: 5, entries: [[4, 4]], lastNew: 4, commit: 4, terms: [1, 2, 3, 4]),
            MaybeAppendCase(
                logTerm: 3, index: 3, committed: 5, entries: [[4, 4], [5, 4]], lastNew: 5, commit: 5, terms: [1, 2, 3, 4, 4]
            ),
            // Matches an entry in the middle: the conflicting suffix is replaced.
            MaybeAppendCase(logTerm: 2, index: 2, committed: 3, entries: [[3, 4]], lastNew: 3, commit: 3, terms: [1, 2, 4]),
            MaybeAppendCase(logTerm: 1, index: 1, committed: 3, entries: [[2, 4]], lastNew: 2, commit: 2, terms: [1, 4]),
            MaybeAppendCase(logTerm: 1, index: 1, committed: 3, entries: [[2, 4], [3, 4]], lastNew: 3, commit: 3, terms: [1, 4, 4]),
            // Entries already present are not rewritten, and nothing after them is dropped.
            MaybeAppendCase(logTerm: 1, index: 1, committed: 1, entries: [[2, 2]], lastNew: 2, commit: 1, terms: [1, 2, 3]),
        ]
    )
    func maybeAppend(_ testCase: MaybeAppendCase) {
        var log = Self.makeLog(terms: [1, 2, 3])
        log.commit(to: 1)
        let lastNew = log.maybeAppend(
            index: testCase.index, logTerm: testCase.logTerm, committed: testCase.committed,
            entries: Self.pairs(testCase.entries.map { ($0[0], $0[1]) })
        )
        #expect(lastNew == testCase.lastNew)
        #expect(log.committed == testCase.commit)
        #expect(log.allEntries().map(\.term) == testCase.terms)
    }

    @Test("term(at:) answers from firstIndex - 1 to lastIndex, across storage and unstable entries")
    func termBounds() throws {
        let log = Self.makeLog(terms: [1, 2, 3, 4, 5], compactedThrough: 3, unstable: [6, 7])
        #expect(log.firstIndex == 4)
        #expect(log.lastIndex == 7)
        #expect(log.lastTerm == 7)
        #expect(throws: RaftStorageError.compacted) { try log.term(at: 2) }
        #expect(try log.term(at: 3) == 3)
        #expect(try log.term(at: 5) == 5)
        #expect(try log.term(at: 6) == 6)
        #expect(try log.term(at: 7) == 7)
        #expect(throws: RaftStorageError.unavailable) { try log.term(at: 8) }
        #expect(log.termOrZero(at: 8) == 0)
        #expect(log.matchTerm(3, 3))
        #expect(!log.matchTerm(3, 2))
    }

    @Test("slice joins storage and unstable entries and stops at the byte limit, but returns at least one entry")
    func sliceWithLimits() throws {
        // Every entry is 10 payload bytes + 24 = 34 bytes; 2...5 are stable, 6...8 unstable.
        let log = Self.makeLog(terms: [1, 1, 1, 1, 1], compactedThrough: 1, unstable: [2, 2, 2], dataBytes: 10)
        let size = 34
        #expect(try log.slice(from: 2, to: 9, maxBytes: Int.max).map(\.index) == [2, 3, 4, 5, 6, 7, 8])
        #expect(try log.slice(from: 4, to: 8, maxBytes: size * 3).map(\.index) == [4, 5, 6])
        #expect(try log.slice(from: 4, to: 8, maxBytes: size * 2).map(\.index) == [4, 5])
        #expect(try log.slice(from: 4, to: 8, maxBytes: size * 3 - 1).map(\.index) == [4, 5])
        #expect(try log.slice(from: 5, to: 8, maxBytes: 0).map(\.index) == [5])
        #expect(try log.slice(from: 6, to: 8, maxBytes: 0).map(\.index) == [6])
        #expect(try log.slice(from: 6, to: 9, maxBytes: size * 2).map(\.index) == [6, 7])
        #expect(try log.slice(from: 5, to: 9, maxBytes: size * 4).map(\.index) == [5, 6, 7, 8])
        #expect(try log.slice(from: 4, to: 4, maxBytes: 0).isEmpty)
        #expect(throws: RaftStorageError.compacted) { try log.slice(from: 1, to: 3, maxBytes: Int.max) }
        #expect(try log.entries(from: 9, maxBytes: Int.max).isEmpty)
        #expect(try log.entries(from: 7, maxBytes: Int.max).map(\.index) == [7, 8])
    }

    @Test("commit only moves forward; a leader commits by counting only at an index of its own term")
    func commitRules() {
        var log = Self.makeLog(terms: [1, 1, 2, 2])
        log.commit(to: 2)
        #expect(log.committed == 2)
        log.commit(to: 1)
        #expect(log.committed == 2)
        #expect(log.maybeCommit(upTo: 3, term: 1) == false)
        #expect(log.committed == 2)
        #expect(log.maybeCommit(upTo: 3, term: 2) == true)
        #expect(log.committed == 3)
        #expect(log.maybeCommit(upTo: 3, term: 2) == false)
        #expect(log.maybeCommit(upTo: UInt64.max, term: 2) == false)
    }

    @Test("applied stays within [applied, committed] and bounds the committed entries handed out")
    func appliedRules() {
        var log = Self.makeLog(terms: [1, 1, 1, 1])
        log.commit(to: 3)
        #expect(log.nextCommittedEntries().map(\.index) == [1, 2, 3])
        #expect(log.hasNextCommittedEntries)
        log.applied(to: 2)
        #expect(log.applied == 2)
        #expect(log.nextCommittedEntries().map(\.index) == [3])
        log.applied(to: 0)
        #expect(log.applied == 2)
        log.applied(to: 3)
        #expect(log.nextCommittedEntries().isEmpty)
        #expect(!log.hasNextCommittedEntries)
    }

    @Test("committing beyond the last index is a broken invariant and traps")
    func commitBeyondLastTraps() async {
        await #expect(processExitsWith: .failure) {
            var log = RaftLogUnitTests.makeLog(terms: [1, 1])
            log.commit(to: 3)
        }
    }

    @Test("committed entries handed out per Ready respect maxCommittedBytesPerReady")
    func committedEntriesSizeLimit() {
        var log = Self.makeLog(terms: [1, 1, 1, 1, 1], dataBytes: 26, maxCommittedBytesPerReady: 100)
        log.commit(to: 5)
        // 50 bytes each: two fit in 100.
        #expect(log.nextCommittedEntries().map(\.index) == [1, 2])
        log.applied(to: 2)
        #expect(log.nextCommittedEntries().map(\.index) == [3, 4])
        log.applied(to: 4)
        #expect(log.nextCommittedEntries().map(\.index) == [5])
    }

    @Test("restore replaces the log with a snapshot and commits up to it")
    func restoreSnapshot() throws {
        var log = Self.makeLog(terms: [1, 1, 2], unstable: [2, 3])
        log.restore(Snapshot(metadata: SnapshotMetadata(index: 10, term: 4, confState: ConfState(voters: [nid(1)]))))
        #expect(log.committed == 10)
        #expect(log.firstIndex == 11)
        #expect(log.lastIndex == 10)
        #expect(log.lastTerm == 4)
        #expect(try log.term(at: 10) == 4)
        #expect(log.unstableEntries.isEmpty)
        #expect(log.hasPendingSnapshot)
        #expect(try log.snapshot().metadata.index == 10)
        #expect(log.nextCommittedEntries().isEmpty)
        log.append([Entry(term: 4, index: 11)])
        #expect(log.lastIndex == 11)
        log.stableSnapshot(to: 10)
        #expect(!log.hasPendingSnapshot)
    }

    @Test("isUpToDate compares last terms first, then lengths (§5.4.1)")
    func isUpToDate() {
        let log = Self.makeLog(terms: [1, 2, 3])
        #expect(log.isUpToDate(lastIndex: 3, term: 3))
        #expect(log.isUpToDate(lastIndex: 4, term: 3))
        #expect(!log.isUpToDate(lastIndex: 2, term: 3))
        #expect(log.isUpToDate(lastIndex: 1, term: 4))
        #expect(!log.isUpToDate(lastIndex: 10, term: 2))
    }

    @Test("stable(to:) drops persisted unstable entries, unless they were replaced meanwhile")
    func stableTo() {
        var log = Self.makeLog(terms: [1], unstable: [1, 2, 2])
        #expect(log.unstable.offset == 2)
        log.stable(to: 2, term: 1)
        #expect(log.unstableEntries.map(\.index) == [3, 4])
        log.stable(to: 3, term: 1)
        #expect(log.unstableEntries.map(\.index) == [3, 4])
        log.stable(to: 4, term: 2)
        #expect(log.unstableEntries.isEmpty)
        #expect(log.unstable.offset == 5)
    }
}

@Suite struct UnstableLogUnitTests {
    static func unstable(offset: UInt64, terms: [UInt64], snapshot: (index: UInt64, term: UInt64)? = nil) -> UnstableLog {
        var log = UnstableLog(offset: offset)
        log.entries = entries(terms: terms, from: offset)
        if let snapshot { log.snapshot = Snapshot(metadata: SnapshotMetadata(index: snapshot.index, term: snapshot.term)) }
        return log
    }

    @Test("first and last index are known only from a snapshot or entries")
    func indexes() {
        #expect(Self.unstable(offset: 5, terms: []).firstIndexIfKnown == nil)
        #expect(Self.unstable(offset: 5, terms: []).lastIndexIfKnown == nil)
        #expect(Self.unstable(offset: 5, terms: [1]).lastIndexIfKnown == 5)
        #expect(Self.unstable(offset: 5, terms: [1], snapshot: (4, 1)).firstIndexIfKnown == 5)
        #expect(Self.unstable(offset: 5, terms: [], snapshot: (4, 1)).lastIndexIfKnown == 4)
    }

    @Test("term(at:) covers the snapshot index and the entries, nothing else")
    func term() {
        let log = Self.unstable(offset: 5, terms: [1, 2], snapshot: (4, 1))
        #expect(log.term(at: 3) == nil)
        #expect(log.term(at: 4) == 1)
        #expect(log.term(at: 5) == 1)
        #expect(log.term(at: 6) == 2)
        #expect(log.term(at: 7) == nil)
        #expect(Self.unstable(offset: 5, terms: [1]).term(at: 4) == nil)
    }

    @Test("stable(to:term:) removes a persisted prefix only when the term still matches")
    func stable() {
        var log = Self.unstable(offset: 5, terms: [1, 1, 2])
        log.stable(to: 4, term: 1)
        #expect(log.offset == 5)
        log.stable(to: 6, term: 2)
        #expect(log.offset == 5)
        log.stable(to: 6, term: 1)
        #expect(log.offset == 7)
        #expect(log.entries == [Entry(term: 2, index: 7)])
        log.stable(to: 7, term: 2)
        #expect(log.entries.isEmpty)
        #expect(log.offset == 8)
    }

    @Test("truncateAndAppend appends, replaces everything, or truncates in the middle")
    func truncateAndAppend() {
        var appended = Self.unstable(offset: 5, terms: [1])
        appended.truncateAndAppend(entries(terms: [1, 1], from: 6))
        #expect(appended.offset == 5)
        #expect(appended.entries.map(\.index) == [5, 6, 7])

        var replaced = Self.unstable(offset: 5, terms: [1])
        replaced.truncateAndAppend(entries(terms: [2, 2], from: 4))
        #expect(replaced.offset == 4)
        #expect(replaced.entries == entries(terms: [2, 2], from: 4))

        var truncated = Self.unstable(offset: 5, terms: [1, 1, 1])
        truncated.truncateAndAppend(entries(terms: [2, 2], from: 6))
        #expect(truncated.offset == 5)
        #expect(truncated.entries.map(\.term) == [1, 2, 2])
    }

    @Test("restore installs a snapshot and empties the entries")
    func restore() {
        var log = Self.unstable(offset: 5, terms: [1, 1])
        log.restore(Snapshot(metadata: SnapshotMetadata(index: 9, term: 3)))
        #expect(log.offset == 10)
        #expect(log.entries.isEmpty)
        #expect(log.snapshot?.metadata.index == 9)
        log.stableSnapshot(to: 8)
        #expect(log.snapshot != nil)
        log.stableSnapshot(to: 9)
        #expect(log.snapshot == nil)
    }

    @Test("slice returns the entries in [low, high)")
    func slice() {
        let log = Self.unstable(offset: 5, terms: [1, 2, 3])
        #expect(log.slice(from: 5, to: 8).map(\.term) == [1, 2, 3])
        #expect(log.slice(from: 6, to: 7).map(\.term) == [2])
        #expect(log.slice(from: 7, to: 7).isEmpty)
    }
}
