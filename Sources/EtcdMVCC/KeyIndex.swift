/// The revision history of one key, kept in memory (etcd's `keyIndex`).
///
/// The history is a list of generations. A generation runs from the put that created the key to
/// the tombstone that deleted it; the tombstone is the generation's last revision and a new,
/// empty generation follows it. So the last generation is the live one (empty while the key is
/// deleted) and every earlier generation ends in a tombstone, e.g. put(1) put(2) del(3) put(4)
/// gives `[{1, 2, 3(t)}, {4}]`.
///
/// Only revisions live here; values stay on disk and are read by revision.
struct KeyIndex: Hashable, Sendable {
    /// The newest revision recorded for the key (put or tombstone).
    private(set) var modified: Revision
    /// Never empty; only the last generation may be empty.
    private(set) var generations: [Generation]

    /// One life of a key, from creation to deletion.
    struct Generation: Hashable, Sendable {
        /// The main revision of the put that created this generation.
        var created: Int64
        /// Changes in this generation so far, including ones compacted away (and the tombstone):
        /// the version of `revisions[i]` is `version - (revisions.count - 1 - i)`.
        var version: Int64
        /// Ascending; the last one is the tombstone in every generation but the last.
        var revisions: [Revision]

        init(created: Int64, version: Int64, revisions: [Revision]) {
            self.created = created
            self.version = version
            self.revisions = revisions
        }
    }

    /// A key with no history (etcd's empty keyIndex); it gains revisions through ``put(_:)``.
    init() {
        modified = Revision(main: 0, sub: 0)
        generations = [Generation(created: 0, version: 0, revisions: [])]
    }

    /// Exposes a state for tests that compare with etcd's own keyIndex fixtures.
    init(modified: Revision, generations: [Generation]) {
        precondition(!generations.isEmpty, "a key index has at least one generation")
        self.modified = modified
        self.generations = generations
    }

    /// True when no revision is left: the key can leave the index.
    var isEmpty: Bool {
        generations.count == 1 && generations[0].revisions.isEmpty
    }

    /// True when the key currently exists (its live generation is not empty).
    var isLive: Bool {
        guard let last = generations.last else { return false }
        return !last.revisions.isEmpty
    }

    /// Records a put at `revision`, starting a generation if the key is deleted or new.
    mutating func put(_ revision: Revision) {
        precondition(
            revision > modified,
            "key index: put at revision \(revision) is not after the last modification \(modified)"
        )
        let last = generations.count - 1
        if generations[last].revisions.isEmpty {
            generations[last].created = revision.main
        }
        generations[last].revisions.append(revision)
        generations[last].version += 1
        modified = revision
    }

    /// Rebuilds a key from its oldest surviving row after a restart: etcd stores the creation
    /// revision and version in every row precisely so that compacted history is not needed.
    mutating func restore(created: Int64, modified revision: Revision, version: Int64) {
        precondition(isEmpty, "key index: restore at revision \(revision) into a key that has history")
        generations = [Generation(created: created, version: version, revisions: [revision])]
        modified = revision
    }

    /// Records a delete at `revision` and opens a new empty generation. Returns false (and
    /// changes nothing) when the key is already deleted, as etcd's `ErrRevisionNotFound`.
    @discardableResult
    mutating func tombstone(_ revision: Revision) -> Bool {
        guard isLive else { return false }
        put(revision)
        generations.append(Generation(created: 0, version: 0, revisions: []))
        return true
    }

    /// What the key looked like at main revision `atRevision`: the newest revision at or below
    /// it, its generation's creation revision and the version; `nil` when the key did not exist.
    func get(at atRevision: Int64) -> (modified: Revision, created: Int64, version: Int64)? {
        guard let generationIndex = generationIndex(at: atRevision) else { return nil }
        let generation = generations[generationIndex]
        guard let position = generation.revisions.lastIndex(where: { $0.main <= atRevision }) else { return nil }
        let newer = Int64(generation.revisions.count - 1 - position)
        return (generation.revisions[position], generation.created, generation.version - newer)
    }

    /// The generation alive at `atRevision`, or nil when the key was absent then (before its
    /// creation, or between a tombstone and the next put).
    private func generationIndex(at atRevision: Int64) -> Int? {
        let last = generations.count - 1
        var index = last
        while index >= 0 {
            let revisions = generations[index].revisions
            if let first = revisions.first, let final = revisions.last {
                // A finished generation's last revision is its tombstone: from then on it is gone.
                if index != last, final.main <= atRevision { return nil }
                if first.main <= atRevision { return index }
            }
            index -= 1
        }
        return nil
    }

    /// Forgets history at or below `atRevision` as etcd's compaction does: for the generation
    /// alive at `atRevision` only its newest revision at or below it survives; generations that
    /// ended (tombstone) at or below `atRevision` vanish whole. Every dropped revision is
    /// appended to `removed` so the caller can delete the same rows on disk.
    mutating func compact(at atRevision: Int64, removed: inout [Revision]) {
        var first = 0
        while first < generations.count - 1, let tombstone = generations[first].revisions.last,
            tombstone.main <= atRevision
        {
            removed.append(contentsOf: generations[first].revisions)
            first += 1
        }
        if first > 0 {
            generations.removeFirst(first)
        }
        if let keep = generations[0].revisions.lastIndex(where: { $0.main <= atRevision }), keep > 0 {
            removed.append(contentsOf: generations[0].revisions[..<keep])
            generations[0].revisions.removeFirst(keep)
        }
    }
}

extension KeyIndex {
    /// The revision a compaction at `atRevision` would keep for this key, if any (etcd's `keep`):
    /// the newest revision at or below it in the generation alive then. Used to hash the store
    /// as it would look compacted, so members at different compaction points can agree.
    func keptRevision(at atRevision: Int64) -> Revision? {
        var generation = 0
        while generation < generations.count - 1, let tombstone = generations[generation].revisions.last,
            tombstone.main <= atRevision
        {
            generation += 1
        }
        return generations[generation].revisions.last(where: { $0.main <= atRevision })
    }
}
