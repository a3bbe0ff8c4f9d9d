public import EtcdBackend
import DequeModule

/// etcd's multi-version key-value store: every change gets a revision, reads can go back to any
/// revision not yet compacted, and compaction forgets history below a revision.
///
/// Revisions and the key index live in memory; values live in the ``Backend`` (SQLite), one row
/// per revision, so the data may exceed RAM. Writes happen inside a *batch*, one backend
/// transaction that the server fills with many requests before a single durable commit (etcd's
/// batched bbolt commits). If a batch fails or is aborted the in-memory state is rebuilt from
/// disk, so memory never runs ahead of what a restart would see.
///
/// Not `Sendable`: one owner drives it (the server keeps it behind a lock for a whole batch).
public final class MVCCStore {
    /// The storage holding every revision's row and the meta values.
    public let backend: Backend
    let table: KVTable
    var index = RevisionIndex()

    /// The revision of the last committed-or-applied write transaction. A new store is at 1, as
    /// in etcd, so the first put gets `mod_revision` 2.
    public internal(set) var currentRevision: Int64 = 1

    /// etcd starts this at -1 ("never compacted"), which lets a first compaction at 0 succeed and
    /// a later one at 0 fail as `.compacted`, exactly as etcd answers.
    /// etcd's `compactMainRev`: -1 until the first compaction. Txn range checks compare against
    /// this raw value (etcd's `FirstRev()`), so a range at -1 on a never-compacted store is valid.
    package private(set) var compactMainRevision: Int64 = -1

    /// The revision of the last compaction, 0 if the store was never compacted.
    public var compactedRevision: Int64 { max(compactMainRevision, 0) }

    /// Meta name under which the compaction revision is persisted (etcd's `finishedCompactRev`).
    /// ``setMeta(_:_:)`` refuses it: only ``compact(_:)`` may move it.
    public static let compactedRevisionMetaName = "finished_compact_revision"

    /// The newest compaction whose rows are all deleted from the backend (etcd's
    /// `finishedCompactRev`): what a `physical` compaction request waits for.
    public private(set) var physicallyCompactedRevision: Int64 = -1
    /// Rows that compaction removed from the index, waiting for ``compactStep(limit:)``.
    private var pendingCompactionRows: Deque<Revision> = []

    private(set) var inBatch = false
    var writeOpen = false

    /// Whether finished write transactions are kept for ``takeChanges()`` (the server's watch
    /// feed). Off by default, so a store nobody drains does not grow.
    public var recordsChanges = false
    /// Revisions written since the last ``takeChanges()``, oldest first.
    private var recordedChanges: [RevisionChanges] = []
    /// The lease of every live key that has one, as the last rebuild from disk found it, until
    /// the lessor takes it (``takeRestoredLeaseAttachments()``).
    private var restoredLeaseAttachments: [[UInt8]: Int64] = [:]
    /// A backend failure inside the current batch: the batch can only be rolled back now.
    private var batchFailure: BackendError?

    /// Opens the store on `backend`: creates the tables if missing, then rebuilds the key index,
    /// the current revision and the compacted revision from the rows on disk.
    public init(backend: Backend) throws(MVCCError) {
        precondition(!backend.isInTransaction, "MVCCStore.init: the backend has an open transaction")
        self.backend = backend
        self.table = KVTable(backend: backend)
        do {
            try table.createSchema()
            try rebuild()
        } catch {
            throw .backend(error)
        }
    }

    // MARK: Reading

    /// Reads `range` as of `options.revision` (0 = now). Keys ascend bytewise; `count` ignores the
    /// limit. Throws `.futureRevision` past the current revision and `.compacted` below the
    /// compacted revision (reading exactly at it is allowed, as in etcd).
    public func range(_ range: KeyRange, options: RangeOptions) throws(MVCCError) -> RangeResult {
        try read(range, options, current: currentRevision)
    }

    /// Shared by the store and write transactions; `current` is the revision the reader is at.
    func read(_ range: KeyRange, _ options: RangeOptions, current: Int64) throws(MVCCError) -> RangeResult {
        // etcd checks the future first, then resolves 0 to "now", then checks compaction.
        if options.revision > current { throw .futureRevision }
        let atRevision = options.revision <= 0 ? current : options.revision
        if atRevision < compactMainRevision { throw .compacted }

        let limit = options.limit > 0 ? Int(options.limit) : Int.max
        var revisions: [Revision] = []
        var count = 0
        index.visit(range, at: atRevision) { _, revision in
            count += 1
            if !options.countOnly, revisions.count < limit {
                revisions.append(revision)
            }
            return true
        }
        var kvs: [KeyValue] = []
        kvs.reserveCapacity(revisions.count)
        for revision in revisions {
            let stored: KeyValue?
            do {
                stored = try table.read(revision)
            } catch {
                throw .backend(error)
            }
            guard let kv = stored else {
                preconditionFailure(
                    "mvcc: index names revision \(revision) (read at \(atRevision), current \(current)) but the backend has no row"
                )
            }
            kvs.append(kv)
        }
        return RangeResult(kvs: kvs, revision: current, count: count)
    }

    /// The changes with main revision in `[startRevision, endRevision]` (default: up to the
    /// current revision), in revision order, at most `limit`: what a watcher catching up reads.
    /// Throws `.compacted` when `startRevision` is below the compacted revision, as etcd's watch.
    public func events(
        from startRevision: Int64,
        through endRevision: Int64? = nil,
        limit: Int = Int.max
    ) throws(MVCCError) -> [MVCCEvent] {
        precondition(limit > 0, "events: limit must be positive, got \(limit)")
        if startRevision < compactMainRevision { throw .compacted }
        do {
            return try table.events(
                from: startRevision, through: endRevision ?? currentRevision, limit: limit,
                compactedRevision: compactMainRevision)
        } catch {
            throw .backend(error)
        }
    }

    /// A checksum of the keyspace history up to `revision` (0 = current), for etcd's HashKV
    /// RPC and corruption checks between members (etcd's `HashByRev`): it covers every row at or
    /// below `revision`, except that rows at or below the compacted revision count only if a
    /// compaction at `revision` would keep them. Members compare hashes taken at the same
    /// revision and compacted revision. Throws `.compacted` for `0 < revision <= compacted`
    /// and `.futureRevision` past the current revision.
    ///
    /// Each row is hashed in the bytes etcd keeps in bbolt's `key` bucket (see
    /// ``EtcdRowEncoding``), so for the same history the value equals Go etcd's. In one go; a
    /// server hashes a large store in pieces instead (``startHashKV(revision:)``).
    public func hashKV(revision: Int64) throws(MVCCError) -> KVHash {
        var progress = try startHashKV(revision: revision)
        while true {
            if let hash = try continueHash(&progress, rows: Int.max) { return hash }
        }
    }

    /// A checksum of every stored row, in the same byte form as ``hashKV(revision:)`` but with
    /// no row skipped (etcd's Hash RPC; its `hash` is this, `revision` the current revision).
    public func hashAllRows() throws(MVCCError) -> KVHash {
        var progress = startHashAllRows()
        while true {
            if let hash = try continueHash(&progress, rows: Int.max) { return hash }
        }
    }

    /// Starts ``hashKV(revision:)`` to be computed a number of rows at a time by
    /// ``continueHash(_:rows:)``, so that whoever holds the store between pieces (applies,
    /// reads) is not held up by a hash of a large store.
    public func startHashKV(revision: Int64) throws(MVCCError) -> HashProgress {
        if revision > 0, revision <= compactMainRevision { throw .compacted }
        if revision > currentRevision { throw .futureRevision }
        let atRevision = revision == 0 ? currentRevision : revision
        return HashProgress(
            atRevision: atRevision, currentRevision: currentRevision, compactRevision: compactMainRevision,
            // As etcd: an empty keep set means nothing below the compaction point is skipped.
            keep: index.keep(at: atRevision),
            // Rows a compaction has yet to delete are history already gone; they count for nothing.
            pendingDeletion: Set(pendingCompactionRows), skipsCompacted: true)
    }

    /// Starts ``hashAllRows()`` in pieces, as ``startHashKV(revision:)``.
    public func startHashAllRows() -> HashProgress {
        HashProgress(
            atRevision: currentRevision, currentRevision: currentRevision, compactRevision: compactMainRevision,
            keep: [], pendingDeletion: [], skipsCompacted: false)
    }

    /// Hashes up to `rows` more rows; returns the hash once every row is in. Rows at or below
    /// the hashed revision change only by compaction, so the pieces add up to one consistent
    /// hash unless a compaction happened between them: then the hash starts again from the
    /// first row (or fails with `.compacted` if the revision is now compacted).
    public func continueHash(_ progress: inout HashProgress, rows: Int) throws(MVCCError) -> KVHash? {
        precondition(rows > 0, "continueHash: rows must be positive, got \(rows)")
        if progress.compactRevision != compactMainRevision {
            progress = progress.skipsCompacted
                ? try startHashKV(revision: progress.atRevision) : startHashAllRows()
        }
        let lowest = progress.compactRevision + 1
        var row: [UInt8] = []
        var last = progress.after
        let read: Int
        do {
            read = try table.forEachRow(through: progress.atRevision, after: progress.after, limit: rows) {
                rowRevision, kv, tombstone in
                last = rowRevision
                if progress.skipsCompacted, rowRevision.main < lowest {
                    if !progress.keep.isEmpty, !progress.keep.contains(rowRevision) { return }
                    if progress.pendingDeletion.contains(rowRevision) { return }
                }
                row.removeAll(keepingCapacity: true)
                EtcdRowEncoding.appendRevisionKey(rowRevision, tombstone: tombstone, to: &row)
                EtcdRowEncoding.appendKeyValue(tombstone ? .tombstone(of: kv.key) : kv, to: &row)
                progress.crc.update(row)
            }
        } catch {
            throw .backend(error)
        }
        progress.after = last
        guard read < rows else { return nil }
        return KVHash(
            hash: progress.crc.value, revision: progress.currentRevision, compactRevision: progress.compactRevision,
            hashRevision: progress.atRevision)
    }

    /// A meta value (e.g. `consistent_index`), or nil if never set. Sees the open batch's writes.
    public func meta(_ name: String) throws(MVCCError) -> Int64? {
        do {
            return try table.meta(name)
        } catch {
            throw .backend(error)
        }
    }

    /// The changes of every revision written since the last call, oldest first, each revision's
    /// events in sub-revision order (only while ``recordsChanges`` is on).
    public func takeChanges() -> [RevisionChanges] {
        defer { recordedChanges.removeAll(keepingCapacity: true) }
        return recordedChanges
    }

    func record(_ changes: RevisionChanges) {
        if recordsChanges { recordedChanges.append(changes) }
    }

    /// The lease of each live key that has one, as of the last time memory was rebuilt from disk
    /// (at open, and after a rolled-back batch); handed out once, for the lessor to re-attach
    /// keys (etcd's lessor recovers its attachments from the keys the same way).
    public func takeRestoredLeaseAttachments() -> [([UInt8], Int64)] {
        defer { restoredLeaseAttachments = [:] }
        return restoredLeaseAttachments.map { ($0.key, $0.value) }
    }

    // MARK: Batches

    /// Opens the backend transaction that the following writes join.
    public func beginBatch() throws(MVCCError) {
        precondition(!inBatch, "beginBatch: a batch is already open (current revision \(currentRevision))")
        do {
            try backend.begin()
        } catch {
            throw .backend(error)
        }
        inBatch = true
        batchFailure = nil
    }

    /// Commits the batch (on disk before returning when `durably`; otherwise safe from a process
    /// crash at once and from a power loss at the next durable commit). If that fails (or a write
    /// in the batch failed), the batch is rolled back, memory is rebuilt from disk, and the error
    /// is thrown.
    public func commitBatch(durably: Bool = false) throws(MVCCError) {
        precondition(inBatch, "commitBatch: no batch is open (current revision \(currentRevision))")
        precondition(!writeOpen, "commitBatch: a write transaction at revision \(currentRevision) was not ended")
        inBatch = false
        if let failure = batchFailure {
            batchFailure = nil
            rollbackAndRebuild()
            throw .backend(failure)
        }
        do {
            try backend.commit(durably: durably)
        } catch {
            rollbackAndRebuild()
            throw .backend(error)
        }
    }

    /// Discards the batch: rolls the backend back and rebuilds memory from disk.
    public func abortBatch() {
        precondition(inBatch, "abortBatch: no batch is open (current revision \(currentRevision))")
        precondition(!writeOpen, "abortBatch: a write transaction at revision \(currentRevision) was not ended")
        inBatch = false
        batchFailure = nil
        rollbackAndRebuild()
    }

    /// Starts a write transaction; its changes get main revision `currentRevision + 1`.
    public func beginWrite() -> WriteTransaction {
        precondition(inBatch, "beginWrite outside a batch (current revision \(currentRevision))")
        precondition(!writeOpen, "beginWrite: the write transaction at revision \(currentRevision + 1) was not ended")
        writeOpen = true
        return WriteTransaction(store: self, beginRevision: currentRevision)
    }

    /// Forgets history at or below `revision` (etcd's compaction), in the open batch: for each key
    /// only its newest revision at or below `revision` survives, and only if it is not a tombstone.
    /// The current revision does not change.
    ///
    /// As in etcd, the compaction takes effect at once (reads below `revision` fail, the index
    /// forgets the history) while the rows themselves are deleted later, in bounded steps
    /// (``compactStep(limit:)``), so that a compaction of millions of revisions never holds up
    /// the writes and reads behind it. The rows waiting for deletion are unreachable: reads go
    /// through the index, and history reads start at or above the compaction revision. After a
    /// crash the rebuild finds them again (see `rebuild()`).
    public func compact(_ revision: Int64) throws(MVCCError) {
        precondition(inBatch, "compact(\(revision)) outside a batch")
        precondition(!writeOpen, "compact(\(revision)) while a write transaction is open")
        try checkBatchHealthy()
        if revision <= compactMainRevision { throw .compacted }
        if revision > currentRevision { throw .futureRevision }
        try write { () throws(BackendError) in try table.setMeta(Self.compactedRevisionMetaName, revision) }
        pendingCompactionRows = Self.deletionOrder(Array(pendingCompactionRows) + index.compact(at: revision))
        compactMainRevision = revision
        if pendingCompactionRows.isEmpty { physicallyCompactedRevision = revision }
    }

    /// Compacted rows are deleted oldest first, as etcd does: whatever prefix of them is gone
    /// when the process stops, the rows left rebuild the same index. (A key's tombstone deleted
    /// before the puts it ended would bring the key back to life at the next rebuild.)
    private static func deletionOrder(_ rows: [Revision]) -> Deque<Revision> {
        Deque(rows.sorted())
    }

    /// Rows of compacted history not yet deleted (see ``compact(_:)``).
    public var pendingCompactionRowCount: Int { pendingCompactionRows.count }

    /// Deletes up to `limit` rows of compacted history, in the open batch; returns how many.
    /// When none are left, ``physicallyCompactedRevision`` reaches the compaction revision.
    @discardableResult
    public func compactStep(limit: Int) throws(MVCCError) -> Int {
        precondition(inBatch, "compactStep outside a batch (compacted revision \(compactMainRevision))")
        precondition(!writeOpen, "compactStep while a write transaction is open (revision \(currentRevision))")
        precondition(limit > 0, "compactStep: limit must be positive, got \(limit)")
        try checkBatchHealthy()
        let step = pendingCompactionRows.prefix(limit)
        try write { () throws(BackendError) in
            for gone in step {
                let existed = try table.delete(gone)
                precondition(
                    existed, "compactStep: compaction at \(compactMainRevision) left row \(gone) to delete but it is gone")
            }
        }
        pendingCompactionRows.removeFirst(step.count)
        if pendingCompactionRows.isEmpty { physicallyCompactedRevision = compactMainRevision }
        return step.count
    }

    /// Stores a meta value (e.g. `consistent_index`, `term`) in the open batch.
    public func setMeta(_ name: String, _ value: Int64) throws(MVCCError) {
        precondition(inBatch, "setMeta(\(name)) outside a batch")
        precondition(name != Self.compactedRevisionMetaName, "setMeta: \(name) is owned by compact()")
        try checkBatchHealthy()
        try write { () throws(BackendError) in try table.setMeta(name, value) }
    }

    /// How many rows (revisions of keys, deletions included) the backend holds.
    public func storedRowCount() throws(MVCCError) -> Int {
        do {
            return try table.rowCount()
        } catch {
            throw .backend(error)
        }
    }

    /// Removes a meta value in the open batch (nothing if it was never set).
    public func removeMeta(_ name: String) throws(MVCCError) {
        precondition(inBatch, "removeMeta(\(name)) outside a batch")
        precondition(name != Self.compactedRevisionMetaName, "removeMeta: \(name) is owned by compact()")
        try checkBatchHealthy()
        try write { () throws(BackendError) in try table.removeMeta(name) }
    }

    // MARK: Internals

    /// Runs a backend write of the open batch; a failure poisons the batch (memory may already
    /// hold changes the backend lacks), so only a rollback can follow.
    func write(_ body: () throws(BackendError) -> Void) throws(MVCCError) {
        do {
            try body()
        } catch {
            batchFailure = error
            throw .backend(error)
        }
    }

    func checkBatchHealthy() throws(MVCCError) {
        if let failure = batchFailure { throw .backend(failure) }
    }

    private func rollbackAndRebuild() {
        backend.rollback()
        // Revisions rolled back were never committed; whoever watches must not learn of them.
        recordedChanges.removeAll()
        do {
            try rebuild()
        } catch {
            // Memory must never describe data the disk lacks; if the committed state cannot even
            // be read back, stopping is the only safe answer (etcd panics in the same spot).
            preconditionFailure("mvcc: cannot rebuild the index from the backend after a rollback: \(error)")
        }
    }

    /// Loads the index, current and compacted revisions from the committed rows, as etcd's
    /// `restore`: rows are replayed in revision order; the first row seen for a key carries its
    /// creation revision and version, so compacted history is not needed.
    private func rebuild() throws(BackendError) {
        index.removeAll()
        restoredLeaseAttachments.removeAll()
        compactMainRevision = try table.meta(Self.compactedRevisionMetaName) ?? -1
        var latest: Int64 = 1
        var orphanTombstones: [Revision] = []
        try table.forEachIndexRow { row in
            latest = row.revision.main
            // Rows come in revision order, so each key's last row decides its lease.
            if row.tombstone || row.lease == 0 {
                restoredLeaseAttachments[row.key] = nil
            } else {
                restoredLeaseAttachments[row.key] = row.lease
            }
            if row.tombstone {
                // A tombstone for a key with no live generation carries nothing to restore: the
                // puts it ended were compacted and deleted before it (oldest first), so it is a
                // compacted row still waiting for deletion itself.
                if !index.tombstone(row.key, row.revision) { orphanTombstones.append(row.revision) }
            } else {
                index.restore(row.key, created: row.createRevision, modified: row.revision, version: row.version)
            }
        }
        // Compaction may have removed every row of the newest revisions (a put then a delete,
        // both compacted), and the store never goes back below its compaction point.
        currentRevision = max(latest, compactMainRevision, 1)
        // Rows a compaction had not deleted yet when the process stopped (or the batch rolled
        // back) were just restored into the index: compacting the index again finds exactly
        // those, and their deletion resumes (etcd resumes an unfinished compaction at start).
        pendingCompactionRows = Self.deletionOrder(
            orphanTombstones + (compactMainRevision > 0 ? index.compact(at: compactMainRevision) : []))
        physicallyCompactedRevision = pendingCompactionRows.isEmpty ? compactMainRevision : -1
    }
}
