/// Entries and a snapshot that Raft has accepted but the application has not yet persisted.
/// They are handed out in `Ready` and dropped from here once `advance` says they are stable.
struct UnstableLog {
    var snapshot: Snapshot?
    var entries: [Entry] = []
    /// The index of `entries[0]`.
    var offset: UInt64

    init(offset: UInt64) { self.offset = offset }

    /// The first index if a pending snapshot decides it.
    var firstIndexIfKnown: UInt64? { snapshot.map { $0.metadata.index + 1 } }

    var lastIndexIfKnown: UInt64? {
        if !entries.isEmpty { return offset + UInt64(entries.count) - 1 }
        return snapshot?.metadata.index
    }

    func term(at index: UInt64) -> UInt64? {
        if index < offset {
            if let snapshot, snapshot.metadata.index == index { return snapshot.metadata.term }
            return nil
        }
        guard let last = lastIndexIfKnown, index <= last else { return nil }
        return entries[Int(index - offset)].term
    }

    /// Forgets entries up to `index` once they are persisted, unless they were replaced by a
    /// newer leader's entries in the meantime (then the term no longer matches).
    mutating func stable(to index: UInt64, term: UInt64) {
        guard let current = self.term(at: index), current == term, index >= offset else { return }
        entries.removeFirst(Int(index + 1 - offset))
        offset = index + 1
    }

    mutating func stableSnapshot(to index: UInt64) {
        if let snapshot, snapshot.metadata.index == index { self.snapshot = nil }
    }

    mutating func restore(_ snapshot: Snapshot) {
        offset = snapshot.metadata.index + 1
        entries = []
        self.snapshot = snapshot
    }

    mutating func truncateAndAppend(_ newEntries: some Collection<Entry>) {
        guard let first = newEntries.first else { return }
        let after = first.index
        if after == offset + UInt64(entries.count) {
            entries.append(contentsOf: newEntries)
        } else if after <= offset {
            // Everything unstable is replaced; the new entries may even start below the offset.
            offset = after
            entries = Array(newEntries)
        } else {
            entries.removeSubrange(Int(after - offset)...)
            entries.append(contentsOf: newEntries)
        }
    }

    func slice(from low: UInt64, to high: UInt64) -> ArraySlice<Entry> {
        let upper = offset + UInt64(entries.count)
        precondition(low <= high && low >= offset && high <= upper, "unstable: slice [\(low), \(high)) outside [\(offset), \(upper))")
        return entries[Int(low - offset)..<Int(high - offset)]
    }
}
