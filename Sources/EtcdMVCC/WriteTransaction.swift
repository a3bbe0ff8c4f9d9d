internal import EtcdBackend

/// One write transaction (etcd's `TxnWrite`): every change gets main revision
/// `beginRevision + 1` and sub revisions 0, 1, 2... in order. Reads inside it see its own
/// earlier changes. ``end()`` must be called exactly once; the store's revision moves only if
/// something changed.
public final class WriteTransaction {
    private let store: MVCCStore
    /// The store revision when the transaction began; changes are written at the next one.
    public let beginRevision: Int64
    /// The changes so far, in order (etcd's `Changes()`), for watchers and responses.
    public private(set) var changes: [MVCCEvent] = []
    private var ended = false

    init(store: MVCCStore, beginRevision: Int64) {
        self.store = store
        self.beginRevision = beginRevision
    }

    /// The number of changes so far.
    public var changeCount: Int { changes.count }

    /// etcd reads at the transaction's own revision once it has written, so a txn sees its puts.
    private var readRevision: Int64 { changes.isEmpty ? beginRevision : beginRevision + 1 }

    private var nextRevision: Revision { Revision(main: beginRevision + 1, sub: Int64(changes.count)) }

    /// Reads like ``MVCCStore/range(_:options:)``, at this transaction's revision.
    public func range(_ range: KeyRange, options: RangeOptions) throws(MVCCError) -> RangeResult {
        precondition(!ended, "range on a write transaction at revision \(beginRevision + 1) after end()")
        return try store.read(range, options, current: readRevision)
    }

    /// Stores `value` under `key`. A live key keeps its creation revision and its version grows
    /// by one; a new (or deleted) key starts a generation at this revision with version 1.
    public func put(key: [UInt8], value: [UInt8], lease: Int64) throws(MVCCError) {
        precondition(!ended, "put on a write transaction at revision \(beginRevision + 1) after end()")
        try store.checkBatchHealthy()
        let revision = nextRevision
        let previous = store.index.get(key, at: revision.main)
        let kv = KeyValue(
            key: key,
            createRevision: previous?.created ?? revision.main,
            modRevision: revision.main,
            version: (previous?.version ?? 0) + 1,
            value: value,
            lease: lease
        )
        try store.write { () throws(BackendError) in try store.table.insert(revision, kv, tombstone: false) }
        store.index.put(key, revision)
        changes.append(MVCCEvent(kind: .put, kv: kv))
    }

    /// Deletes the live keys in `range` (one tombstone each) and returns how many there were.
    /// Deleting nothing records no change, so it alone does not advance the revision.
    public func deleteRange(_ range: KeyRange) throws(MVCCError) -> Int64 {
        precondition(!ended, "deleteRange on a write transaction at revision \(beginRevision + 1) after end()")
        try store.checkBatchHealthy()
        var keys: [[UInt8]] = []
        store.index.visit(range, at: readRevision) { key, _ in
            keys.append(key)
            return true
        }
        for key in keys {
            let revision = nextRevision
            let kv = KeyValue(key: key, createRevision: 0, modRevision: revision.main, version: 0, value: [], lease: 0)
            try store.write { () throws(BackendError) in try store.table.insert(revision, kv, tombstone: true) }
            let recorded = store.index.tombstone(key, revision)
            precondition(recorded, "deleteRange: key seen live at \(readRevision) refused its tombstone at \(revision)")
            changes.append(MVCCEvent(kind: .delete, kv: kv))
        }
        return Int64(keys.count)
    }

    /// Finishes the transaction: the store's revision becomes `beginRevision + 1` if anything changed.
    public func end() {
        precondition(!ended, "end() called twice on the write transaction at revision \(beginRevision + 1)")
        precondition(
            store.currentRevision == beginRevision,
            "write transaction began at \(beginRevision) but the store moved to \(store.currentRevision)"
        )
        ended = true
        store.writeOpen = false
        if !changes.isEmpty {
            store.currentRevision += 1
            store.record(RevisionChanges(revision: store.currentRevision, events: changes))
        }
    }
}
