/// Every key's revision history, ordered by key (etcd's `treeIndex`). Pure and in memory: the
/// store pairs each change here with the row it writes to the backend.
struct RevisionIndex {
    private(set) var keys = OrderedKeyMap<KeyIndex>()

    /// The number of keys with any history left (live or not yet compacted away).
    var count: Int { keys.count }

    /// The key's state at `atRevision`, or nil when it did not exist then.
    func get(_ key: [UInt8], at atRevision: Int64) -> (modified: Revision, created: Int64, version: Int64)? {
        keys[key]?.get(at: atRevision)
    }

    /// Records a put of `key` at `revision`.
    mutating func put(_ key: [UInt8], _ revision: Revision) {
        keys.update(key, insertingIfAbsent: KeyIndex.init) { $0.put(revision) }
    }

    /// Records the oldest surviving row of a key while rebuilding after a restart.
    mutating func restore(_ key: [UInt8], created: Int64, modified: Revision, version: Int64) {
        keys.update(key, insertingIfAbsent: KeyIndex.init) { index in
            if index.isEmpty {
                index.restore(created: created, modified: modified, version: version)
            } else {
                index.put(modified)
            }
        }
    }

    /// Records a delete of `key` at `revision`; false when the key is not live (nothing recorded).
    mutating func tombstone(_ key: [UInt8], _ revision: Revision) -> Bool {
        keys.modify(key) { $0.tombstone(revision) } ?? false
    }

    /// Visits the keys in `range` that exist at `atRevision`, ascending, with the revision that
    /// holds their value then, until `body` returns false.
    func visit(
        _ range: KeyRange,
        at atRevision: Int64,
        _ body: (_ key: [UInt8], _ revision: Revision) -> Bool
    ) {
        switch range {
        case .key(let key):
            if let found = get(key, at: atRevision) {
                _ = body(key, found.modified)
            }
        case .fromKey(let start):
            keys.forEach(from: start) { key, index in
                guard let found = index.get(at: atRevision) else { return true }
                return body(key, found.modified)
            }
        case .range(let start, let end):
            guard compareBytes(start, end) < 0 else { return }
            keys.forEach(from: start) { key, index in
                guard compareBytes(key, end) < 0 else { return false }
                guard let found = index.get(at: atRevision) else { return true }
                return body(key, found.modified)
            }
        }
    }

    /// Compacts every key at `atRevision` and returns the revisions that are gone, so the same
    /// rows can be deleted from the backend. Keys with no history left leave the index.
    mutating func compact(at atRevision: Int64) -> [Revision] {
        var removed: [Revision] = []
        keys.updateAll { _, index in
            index.compact(at: atRevision, removed: &removed)
            return !index.isEmpty
        }
        return removed
    }

    /// The revisions a compaction at `atRevision` would keep, one per key at most (etcd's `Keep`).
    func keep(at atRevision: Int64) -> Set<Revision> {
        var kept: Set<Revision> = []
        keys.forEach(from: []) { _, index in
            if let revision = index.keptRevision(at: atRevision) {
                kept.insert(revision)
            }
            return true
        }
        return kept
    }

    mutating func removeAll() {
        keys.removeAll()
    }
}
