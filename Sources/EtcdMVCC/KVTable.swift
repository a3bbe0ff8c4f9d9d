internal import EtcdBackend

/// All of the MVCC layer's SQL, in one place.
///
/// `kv` is etcd's "key" bucket: one row per revision (main, sub) with everything needed to answer
/// a read at that revision and to rebuild the in-memory index after a restart, including the
/// creation revision and version, which survive compaction of the rows that first set them.
/// `meta` is etcd's "meta" bucket (consistent index, term, compacted revision).
struct KVTable {
    let backend: Backend

    static let schema = """
        CREATE TABLE IF NOT EXISTS kv (
            main INTEGER NOT NULL,
            sub INTEGER NOT NULL,
            key BLOB NOT NULL,
            value BLOB NOT NULL,
            create_revision INTEGER NOT NULL,
            version INTEGER NOT NULL,
            lease INTEGER NOT NULL,
            tombstone INTEGER NOT NULL,
            PRIMARY KEY (main, sub)
        );
        CREATE TABLE IF NOT EXISTS meta (
            name TEXT NOT NULL PRIMARY KEY,
            value INTEGER NOT NULL
        );
        """

    func createSchema() throws(BackendError) {
        try backend.execute(Self.schema)
    }

    /// Writes the row for one change; a tombstone stores only the key.
    func insert(_ revision: Revision, _ kv: KeyValue, tombstone: Bool) throws(BackendError) {
        let sql = """
            INSERT INTO kv (main, sub, key, value, create_revision, version, lease, tombstone)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """
        try backend.withStatement(sql) { statement throws(BackendError) in
            try statement.bind(revision.main, at: 1)
            try statement.bind(revision.sub, at: 2)
            try statement.bind(kv.key, at: 3)
            try statement.bind(kv.value, at: 4)
            try statement.bind(kv.createRevision, at: 5)
            try statement.bind(kv.version, at: 6)
            try statement.bind(kv.lease, at: 7)
            try statement.bind(tombstone ? 1 : 0, at: 8)
            try statement.run()
        }
    }

    /// The key-value stored at `revision`, or nil when there is no such row.
    func read(_ revision: Revision) throws(BackendError) -> KeyValue? {
        let sql = "SELECT key, value, create_revision, version, lease FROM kv WHERE main = ?1 AND sub = ?2"
        return try backend.withStatement(sql) { statement throws(BackendError) -> KeyValue? in
            try statement.bind(revision.main, at: 1)
            try statement.bind(revision.sub, at: 2)
            guard try statement.step() else { return nil }
            return KeyValue(
                key: statement.bytes(at: 0),
                createRevision: statement.int64(at: 2),
                modRevision: revision.main,
                version: statement.int64(at: 3),
                value: statement.bytes(at: 1),
                lease: statement.int64(at: 4)
            )
        }
    }

    /// Deletes the row at `revision`; returns whether there was one.
    func delete(_ revision: Revision) throws(BackendError) -> Bool {
        try backend.withStatement("DELETE FROM kv WHERE main = ?1 AND sub = ?2") { statement throws(BackendError) in
            try statement.bind(revision.main, at: 1)
            try statement.bind(revision.sub, at: 2)
            try statement.run()
            return statement.changes == 1
        }
    }

    /// One row as the index rebuild needs it.
    struct IndexRow {
        var revision: Revision
        var key: [UInt8]
        var createRevision: Int64
        var version: Int64
        var lease: Int64
        var tombstone: Bool
    }

    /// Calls `body` for every row in revision order (etcd restores its index the same way).
    func forEachIndexRow(_ body: (IndexRow) -> Void) throws(BackendError) {
        let sql = "SELECT main, sub, key, create_revision, version, lease, tombstone FROM kv ORDER BY main, sub"
        try backend.withStatement(sql) { statement throws(BackendError) in
            while try statement.step() {
                body(
                    IndexRow(
                        revision: Revision(main: statement.int64(at: 0), sub: statement.int64(at: 1)),
                        key: statement.bytes(at: 2),
                        createRevision: statement.int64(at: 3),
                        version: statement.int64(at: 4),
                        lease: statement.int64(at: 5),
                        tombstone: statement.int64(at: 6) != 0
                    )
                )
            }
        }
    }

    /// Events with main revision in `[start, end]`, in revision order, at most `limit` of them,
    /// leaving out tombstones at `compactedRevision` (compaction removes every one of them, but
    /// may not have deleted the row yet).
    func events(from start: Int64, through end: Int64, limit: Int, compactedRevision: Int64) throws(BackendError)
        -> [MVCCEvent]
    {
        let sql = """
            SELECT main, key, value, create_revision, version, lease, tombstone
            FROM kv WHERE main >= ?1 AND main <= ?2 AND NOT (main = ?4 AND tombstone != 0)
            ORDER BY main, sub LIMIT ?3
            """
        return try backend.withStatement(sql) { statement throws(BackendError) -> [MVCCEvent] in
            try statement.bind(start, at: 1)
            try statement.bind(end, at: 2)
            try statement.bind(Int64(limit), at: 3)
            try statement.bind(compactedRevision, at: 4)
            var events: [MVCCEvent] = []
            while try statement.step() {
                let main = statement.int64(at: 0)
                let key = statement.bytes(at: 1)
                if statement.int64(at: 6) != 0 {
                    let kv = KeyValue(key: key, createRevision: 0, modRevision: main, version: 0, value: [], lease: 0)
                    events.append(MVCCEvent(kind: .delete, kv: kv))
                } else {
                    let kv = KeyValue(
                        key: key,
                        createRevision: statement.int64(at: 3),
                        modRevision: main,
                        version: statement.int64(at: 4),
                        value: statement.bytes(at: 2),
                        lease: statement.int64(at: 5)
                    )
                    events.append(MVCCEvent(kind: .put, kv: kv))
                }
            }
            return events
        }
    }

    /// Rows with main revision at or below `end` and after `after` (from the first if nil), in
    /// revision order, at most `limit` of them, as hashed by ``MVCCStore/continueHash(_:rows:)``.
    /// Returns how many rows it read.
    @discardableResult
    func forEachRow(
        through end: Int64, after: Revision? = nil, limit: Int = Int.max,
        _ body: (Revision, KeyValue, _ tombstone: Bool) -> Void
    ) throws(BackendError) -> Int {
        let sql = """
            SELECT main, sub, key, value, create_revision, version, lease, tombstone
            FROM kv WHERE main <= ?1 AND (main > ?2 OR (main = ?2 AND sub > ?3)) ORDER BY main, sub LIMIT ?4
            """
        return try backend.withStatement(sql) { statement throws(BackendError) -> Int in
            try statement.bind(end, at: 1)
            try statement.bind(after?.main ?? Int64.min, at: 2)
            try statement.bind(after?.sub ?? Int64.min, at: 3)
            try statement.bind(Int64(clamping: limit), at: 4)
            var count = 0
            while try statement.step() {
                let revision = Revision(main: statement.int64(at: 0), sub: statement.int64(at: 1))
                let kv = KeyValue(
                    key: statement.bytes(at: 2),
                    createRevision: statement.int64(at: 4),
                    modRevision: revision.main,
                    version: statement.int64(at: 5),
                    value: statement.bytes(at: 3),
                    lease: statement.int64(at: 6)
                )
                body(revision, kv, statement.int64(at: 7) != 0)
                count += 1
            }
            return count
        }
    }

    func setMeta(_ name: String, _ value: Int64) throws(BackendError) {
        try backend.withStatement("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)") {
            statement throws(BackendError) in
            try statement.bind(name, at: 1)
            try statement.bind(value, at: 2)
            try statement.run()
        }
    }

    func rowCount() throws(BackendError) -> Int {
        try backend.withStatement("SELECT count(*) FROM kv") { statement throws(BackendError) -> Int in
            _ = try statement.step()
            return Int(statement.int64(at: 0))
        }
    }

    func removeMeta(_ name: String) throws(BackendError) {
        try backend.withStatement("DELETE FROM meta WHERE name = ?1") { statement throws(BackendError) in
            try statement.bind(name, at: 1)
            try statement.run()
        }
    }

    func meta(_ name: String) throws(BackendError) -> Int64? {
        try backend.withStatement("SELECT value FROM meta WHERE name = ?1") { statement throws(BackendError) -> Int64? in
            try statement.bind(name, at: 1)
            return try statement.step() ? statement.int64(at: 0) : nil
        }
    }
}
