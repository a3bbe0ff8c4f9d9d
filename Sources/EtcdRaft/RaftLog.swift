/// The log as Raft sees it: stable entries in `RaftStorage`, followed by unstable ones not yet
/// persisted, with the commit and applied indexes.
struct RaftLog {
    let storage: any RaftStorage
    var unstable: UnstableLog
    /// The highest index known to be stored on a quorum.
    var committed: UInt64
    /// The highest index the application has applied. Always `applied <= committed`.
    var applied: UInt64
    /// Upper bound on the bytes of committed entries handed out in one `Ready`.
    let maxCommittedBytesPerReady: Int

    init(storage: any RaftStorage, maxCommittedBytesPerReady: Int) {
        self.storage = storage
        self.maxCommittedBytesPerReady = maxCommittedBytesPerReady
        let first = Self.mustRead { () throws(RaftStorageError) in try storage.firstIndex() }
        let last = Self.mustRead { () throws(RaftStorageError) in try storage.lastIndex() }
        unstable = UnstableLog(offset: last + 1)
        committed = first - 1
        applied = first - 1
    }

    /// Storage failures other than the expected compacted/unavailable answers leave Raft unable
    /// to continue safely; etcd-io/raft panics in the same places.
    static func mustRead<T>(_ body: () throws(RaftStorageError) -> T) -> T {
        do {
            return try body()
        } catch {
            preconditionFailure("raft: storage read failed: \(error)")
        }
    }

    var firstIndex: UInt64 {
        if let index = unstable.firstIndexIfKnown { return index }
        return Self.mustRead { () throws(RaftStorageError) in try storage.firstIndex() }
    }

    var lastIndex: UInt64 {
        if let index = unstable.lastIndexIfKnown { return index }
        return Self.mustRead { () throws(RaftStorageError) in try storage.lastIndex() }
    }

    var lastTerm: UInt64 {
        do {
            return try term(at: lastIndex)
        } catch {
            preconditionFailure("raft: no term for last index \(lastIndex): \(error)")
        }
    }

    /// The term at `index`, from `firstIndex - 1` (the dummy entry) up to `lastIndex`.
    func term(at index: UInt64) throws(RaftStorageError) -> UInt64 {
        let dummyIndex = firstIndex - 1
        if index < dummyIndex { throw .compacted }
        if index > lastIndex { throw .unavailable }
        if let term = unstable.term(at: index) { return term }
        do {
            return try storage.term(at: index)
        } catch .compacted {
            throw .compacted
        } catch .unavailable {
            throw .unavailable
        } catch {
            preconditionFailure("raft: storage term(\(index)) failed: \(error)")
        }
    }

    func termOrZero(at index: UInt64) -> UInt64 { (try? term(at: index)) ?? 0 }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool {
        guard let found = try? self.term(at: index) else { return false }
        return found == term
    }

    /// §5.4.1: a log is at least as up-to-date as ours if its last term is higher, or equal with
    /// an index at least as long.
    func isUpToDate(lastIndex candidateIndex: UInt64, term candidateTerm: UInt64) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// Appends a leader's entries after `index` if our entry there has `logTerm` (the log
    /// matching check of §5.3); returns the index of the last new entry, or nil on mismatch.
    mutating func maybeAppend(index: UInt64, logTerm: UInt64, committed leaderCommit: UInt64, entries: [Entry]) -> UInt64? {
        guard matchTerm(index, logTerm) else { return nil }
        let lastNewIndex = index + UInt64(entries.count)
        let conflict = findConflict(entries)
        if conflict != 0 {
            precondition(conflict > committed, "raft: entry \(conflict) conflicts with committed entry (committed \(committed))")
            append(entries[Int(conflict - (index + 1))...])
        }
        commit(to: min(leaderCommit, lastNewIndex))
        return lastNewIndex
    }

    /// Appends entries (replacing any conflicting suffix) and returns the new last index.
    @discardableResult
    mutating func append(_ entries: some Collection<Entry>) -> UInt64 {
        guard let first = entries.first else { return lastIndex }
        precondition(first.index - 1 >= committed, "raft: appending after \(first.index - 1) is below committed \(committed)")
        unstable.truncateAndAppend(entries)
        return lastIndex
    }

    /// The index of the first entry whose term differs from ours (or that we lack), or 0 when
    /// every entry is already present.
    func findConflict(_ entries: [Entry]) -> UInt64 {
        for entry in entries where !matchTerm(entry.index, entry.term) {
            return entry.index
        }
        return 0
    }

    /// The largest index at or below `index` whose term is at most `term`, with that term.
    ///
    /// Used on both ends of a rejected append to skip a whole term of conflicting entries per
    /// round trip instead of one entry (the optimisation suggested at the end of §5.3).
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var index = index
        while true {
            guard let found = try? self.term(at: index) else { return (index, 0) }
            if found <= term || index == 0 { return (index, found) }
            index -= 1
        }
    }

    var unstableEntries: [Entry] { unstable.entries }

    /// Committed entries not yet applied, within the per-Ready byte budget.
    func nextCommittedEntries() -> [Entry] {
        let low = max(applied + 1, firstIndex)
        guard committed + 1 > low else { return [] }
        do {
            return try slice(from: low, to: committed + 1, maxBytes: maxCommittedBytesPerReady)
        } catch {
            preconditionFailure("raft: unexpected error reading committed entries [\(low), \(committed + 1)): \(error)")
        }
    }

    var hasNextCommittedEntries: Bool {
        committed + 1 > max(applied + 1, firstIndex)
    }

    var hasPendingSnapshot: Bool { unstable.snapshot != nil }

    func snapshot() throws(RaftStorageError) -> Snapshot {
        if let snapshot = unstable.snapshot { return snapshot }
        return try storage.snapshot()
    }

    mutating func commit(to index: UInt64) {
        guard committed < index else { return }
        precondition(lastIndex >= index, "raft: commit \(index) is out of range [last index \(lastIndex)]")
        committed = index
    }

    mutating func applied(to index: UInt64) {
        guard index != 0 else { return }
        precondition(committed >= index && index >= applied, "raft: applied \(index) outside [\(applied), \(committed)]")
        applied = index
    }

    /// §5.4.2: a leader commits by counting replicas only for entries of its own term.
    mutating func maybeCommit(upTo index: UInt64, term: UInt64) -> Bool {
        if index > committed && termOrZero(at: index) == term {
            commit(to: index)
            return true
        }
        return false
    }

    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.metadata.index
        unstable.restore(snapshot)
    }

    /// Entries from `index` to the end, limited to `maxBytes` (but at least one).
    func entries(from index: UInt64, maxBytes: Int) throws(RaftStorageError) -> [Entry] {
        if index > lastIndex { return [] }
        return try slice(from: index, to: lastIndex + 1, maxBytes: maxBytes)
    }

    func allEntries() -> [Entry] {
        (try? entries(from: firstIndex, maxBytes: Int.max)) ?? []
    }

    func slice(from low: UInt64, to high: UInt64, maxBytes: Int) throws(RaftStorageError) -> [Entry] {
        precondition(low <= high, "raft: invalid slice \(low) > \(high)")
        let first = firstIndex
        if low < first { throw .compacted }
        precondition(high <= lastIndex + 1, "raft: slice [\(low), \(high)) out of bound [\(first), \(lastIndex)]")
        if low == high { return [] }
        var result: [Entry] = []
        if low < unstable.offset {
            let storedHigh = min(high, unstable.offset)
            let stored: [Entry]
            do {
                stored = try storage.entries(from: low, to: storedHigh, maxBytes: maxBytes)
            } catch .compacted {
                throw .compacted
            } catch {
                preconditionFailure("raft: storage entries [\(low), \(storedHigh)) failed: \(error)")
            }
            // Storage stopped early because of the size limit: nothing unstable can follow.
            if UInt64(stored.count) < storedHigh - low { return stored }
            result = stored
        }
        if high > unstable.offset {
            let unstableEntries = unstable.slice(from: max(low, unstable.offset), to: high)
            if result.isEmpty {
                return limitSize(unstableEntries, maxBytes: maxBytes)
            }
            result.append(contentsOf: unstableEntries)
        }
        return limitSize(result[...], maxBytes: maxBytes)
    }

    mutating func stable(to index: UInt64, term: UInt64) { unstable.stable(to: index, term: term) }
    mutating func stableSnapshot(to index: UInt64) { unstable.stableSnapshot(to: index) }
}
