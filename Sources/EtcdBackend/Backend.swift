internal import CSQLite

/// One SQLite database: etcd's bbolt backend, reimplemented on SQLite.
///
/// The backend is deliberately small. It opens the file in SQLite's WAL mode with
/// `synchronous=NORMAL`: a commit survives the process crashing as soon as it returns, and the
/// file stays consistent after a power loss, but only ``commit(durably:)`` with `true` waits for
/// the disk. That is etcd's arrangement with bbolt: the Raft WAL is the durable record, replayed
/// from the backend's consistent index after a crash, and the backend is made durable before the
/// WAL behind it is released (at snapshots and shutdown). Layers above own their tables and their
/// SQL and use ``withStatement(_:_:)`` and ``execute(_:)``.
///
/// A `Backend` is not `Sendable`: SQLite is opened without its own mutex, and exactly one owner
/// (the server's apply path, behind a lock) uses it at a time.
public final class Backend {
    /// The database file, or `nil` for a private in-memory database.
    public let path: String?
    let connection: OpaquePointer
    private var statements: [String: Statement] = [:]
    // Whether the statement cache is currently lent out, to catch reentrant use of one statement.
    private var borrowed: Set<String> = []

    /// The file name used inside `<data-dir>/member/`.
    public static let fileName = "db.sqlite"

    /// The database path for an etcd data directory: `<dataDirectory>/member/db.sqlite`.
    public static func databasePath(dataDirectory: String) -> String {
        let base = dataDirectory.hasSuffix("/") ? String(dataDirectory.dropLast()) : dataDirectory
        return "\(base)/member/\(fileName)"
    }

    /// Opens (creating if needed) `<dataDirectory>/member/db.sqlite`, creating the directories.
    public convenience init(dataDirectory: String, automaticCheckpoints: Bool = true) throws(BackendError) {
        let base = dataDirectory.hasSuffix("/") ? String(dataDirectory.dropLast()) : dataDirectory
        try FileSystem.createDirectories("\(base)/member")
        try self.init(path: Backend.databasePath(dataDirectory: dataDirectory), automaticCheckpoints: automaticCheckpoints)
    }

    /// Frames in SQLite's WAL file, as its WAL hook last reported them; only counted when the
    /// owner checkpoints itself (see ``init(path:automaticCheckpoints:)``).
    private let walFrames = WALFrameCount()

    /// Opens the database at `path`, creating it if missing; `nil` opens a fresh in-memory database.
    ///
    /// With `automaticCheckpoints` (the default) SQLite checkpoints its WAL into the database at
    /// the commit that takes it past 1,000 pages, syncing both files right there, inside the
    /// commit. A server that must not hold its readers' lock across an fsync turns that off and
    /// checkpoints from a ``BackendCheckpointer`` of its own instead, when ``framesInWAL`` says so.
    ///
    /// Fails with a ``BackendError`` (never a trap) when the file cannot be opened or is not a
    /// SQLite database, e.g. after a torn copy.
    public init(path: String?, automaticCheckpoints: Bool = true) throws(BackendError) {
        self.path = path
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let result = sqlite3_open_v2(path ?? ":memory:", &handle, flags, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(result))
            sqlite3_close_v2(handle)
            throw BackendError(code: result, message: message, operation: "open \(path ?? ":memory:")")
        }
        self.connection = handle
        sqlite3_extended_result_codes(handle, 1)
        // While opening, wait for a connection that is closing: the last connection to a WAL
        // database checkpoints and removes the WAL as it closes, under an exclusive lock, so a
        // member restarted on its directory right after the old one stopped got "database is
        // locked" at once. Afterwards a busy database fails at once again (a stray writer must
        // stop the member, not stall it).
        sqlite3_busy_timeout(handle, 10_000)
        do {
            // Reading the journal mode and the schema touches page 1, so a file that is not a
            // database (or has a damaged header) fails here, at open, with SQLITE_NOTADB.
            // A new database keeps the bookkeeping that lets freed pages be handed back to the
            // file system a few at a time (see ``releaseFreePages(limit:)``). This must come
            // before anything writes the file's first page (switching to WAL does). Only a new,
            // empty database is asked: on an existing one the pragma takes the write lock (and
            // only a full rewrite, ``rewrite()``, would change the mode), which would make a
            // second connection opening the file (a checkpointer, a reader) stall the owner.
            if try pragmaInt("page_count") == 0 { try execute("PRAGMA auto_vacuum=INCREMENTAL") }
            try execute("PRAGMA journal_mode=WAL")
            try execute("PRAGMA synchronous=NORMAL")
            try execute("SELECT count(*) FROM sqlite_master")
            sqlite3_busy_timeout(handle, 0)
            if !automaticCheckpoints {
                // A WAL hook replaces SQLite's automatic checkpoints (which are themselves a WAL
                // hook); this one only records how long the WAL has grown.
                sqlite3_wal_hook(handle, { context, _, _, frames in
                    if let context { Unmanaged<WALFrameCount>.fromOpaque(context).takeUnretainedValue().store(frames) }
                    return SQLITE_OK
                }, Unmanaged.passUnretained(walFrames).toOpaque())
            }
        } catch {
            // The initializer has not finished, so deinit will not run: release the connection here.
            sqlite3_close_v2(handle)
            throw BackendError(code: error.code, message: error.message, operation: "open \(path ?? ":memory:"): \(error.operation)")
        }
    }

    deinit {
        for statement in statements.values {
            sqlite3_finalize(statement.handle)
        }
        sqlite3_close_v2(connection)
    }

    /// Runs one or more SQL statements that return nothing of interest (DDL, pragmas).
    public func execute(_ sql: String) throws(BackendError) {
        var message: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(connection, sql, nil, nil, &message)
        guard result == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(connection))
            sqlite3_free(message)
            throw BackendError(code: result, message: text, operation: sql)
        }
    }

    /// Lends the cached prepared statement for `sql` to `body`, preparing it on first use.
    ///
    /// The statement is reset and its bindings cleared afterwards, whatever `body` does. Nesting
    /// the same SQL inside its own `body` is a programming error and traps.
    public func withStatement<Result>(
        _ sql: String,
        _ body: (Statement) throws(BackendError) -> Result
    ) throws(BackendError) -> Result {
        let statement = try prepared(sql)
        precondition(borrowed.insert(sql).inserted, "statement already in use (reentrant withStatement): \(sql)")
        defer {
            statement.reset()
            borrowed.remove(sql)
        }
        return try body(statement)
    }

    private func prepared(_ sql: String) throws(BackendError) -> Statement {
        if let cached = statements[sql] { return cached }
        var handle: OpaquePointer?
        let result = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard result == SQLITE_OK, let handle else {
            sqlite3_finalize(handle)
            throw error(result, "prepare \(sql)")
        }
        let statement = Statement(handle: handle, sql: sql, backend: self)
        statements[sql] = statement
        return statement
    }

    // MARK: Transactions

    /// True between ``begin()`` and ``commit()``/``rollback()``.
    public var isInTransaction: Bool {
        sqlite3_get_autocommit(connection) == 0
    }

    /// Starts a write transaction, taking SQLite's write lock now rather than at the first write.
    public func begin() throws(BackendError) {
        precondition(!isInTransaction, "begin: a backend transaction is already open")
        try execute("BEGIN IMMEDIATE")
    }

    /// Commits the open transaction. With `durably`, the commit (and every earlier one) is on
    /// disk when this returns: a checkpoint follows, and with `synchronous=NORMAL` SQLite syncs
    /// its WAL file before checkpointing and the database file after.
    public func commit(durably: Bool = false) throws(BackendError) {
        precondition(isInTransaction, "commit: no backend transaction is open")
        try execute("COMMIT")
        if durably { try sync() }
    }

    /// Makes every commit so far durable (a full checkpoint; see ``commit(durably:)``).
    public func sync() throws(BackendError) {
        precondition(!isInTransaction, "sync: a backend transaction is open")
        try execute("PRAGMA wal_checkpoint(FULL)")
    }

    /// Discards the open transaction. Rolling back when none is open (SQLite may already have
    /// rolled back after an I/O error) is harmless.
    public func rollback() {
        guard isInTransaction else { return }
        // A failed ROLLBACK leaves nothing for the caller to do: SQLite rolls the transaction back
        // itself when the connection closes, and hot journals are replayed on the next open.
        _ = sqlite3_exec(connection, "ROLLBACK", nil, nil, nil)
    }

    /// Frames (pages) in the WAL file after the last commit, when checkpoints are the owner's.
    public var framesInWAL: Int { walFrames.load() }

    // MARK: Size, for etcd's Status RPC

    /// Bytes the database occupies (`page_count * page_size`): etcd's `dbSize`.
    public var sizeBytes: Int64 {
        get throws(BackendError) {
            try pragmaInt("page_count") * pragmaInt("page_size")
        }
    }

    /// Bytes holding live data (`(page_count - freelist_count) * page_size`): etcd's `dbSizeInUse`.
    public var sizeInUseBytes: Int64 {
        get throws(BackendError) {
            try (pragmaInt("page_count") - pragmaInt("freelist_count")) * pragmaInt("page_size")
        }
    }

    // MARK: Defragmentation

    /// Pages inside the file that hold nothing (freed by deletions, reused by later writes).
    public var freePageCount: Int64 {
        get throws(BackendError) { try pragmaInt("freelist_count") }
    }

    /// Whether free pages can be handed back a few at a time (SQLite's incremental auto-vacuum);
    /// false for a database created before this backend asked for it, until ``rewrite()``.
    public var releasesPagesIncrementally: Bool {
        get throws(BackendError) { try pragmaInt("auto_vacuum") == 2 }
    }

    /// Moves up to `limit` pages from the end of the file into free pages and shortens the file
    /// by as many, as part of the open transaction (each page moved is a page written). Small
    /// steps between other transactions are what keep defragmentation from stopping writers.
    /// Returns the free pages left. Requires ``releasesPagesIncrementally``.
    @discardableResult
    public func releaseFreePages(limit: Int) throws(BackendError) -> Int64 {
        precondition(limit > 0, "releaseFreePages: limit must be positive, got \(limit)")
        try execute("PRAGMA incremental_vacuum(\(limit))")
        return try freePageCount
    }

    /// Rewrites the whole database without its free pages (SQLite's VACUUM) and switches it to
    /// incremental page release. Holds the database for the whole rewrite, so it is only for a
    /// database made before incremental release existed; must run outside a transaction.
    public func rewrite() throws(BackendError) {
        precondition(!isInTransaction, "rewrite: a transaction is open")
        try execute("PRAGMA auto_vacuum=INCREMENTAL")
        try execute("VACUUM")
    }

    private func pragmaInt(_ name: String) throws(BackendError) -> Int64 {
        try withStatement("PRAGMA \(name)") { statement throws(BackendError) in
            guard try statement.step() else {
                throw BackendError(code: SQLITE_ERROR, message: "pragma returned no row", operation: "PRAGMA \(name)")
            }
            return statement.int64(at: 0)
        }
    }

    func error(_ result: Int32, _ operation: String) -> BackendError {
        BackendError(code: result, message: String(cString: sqlite3_errmsg(connection)), operation: operation)
    }
}

/// The WAL hook's report, shared with the C callback through an unretained pointer (the
/// backend owns it and outlives the connection's hook). The hook runs on the thread that
/// commits, which is the backend's one owner, so no lock is needed.
final class WALFrameCount {
    private var frames: Int32 = 0
    func store(_ value: Int32) { frames = value }
    func load() -> Int { Int(frames) }
}
