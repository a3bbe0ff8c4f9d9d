internal import CSQLite

/// Checkpoints a backend's WAL through a connection of its own.
///
/// In WAL mode a commit only appends to the WAL file; a checkpoint copies those pages into the
/// database file and, with `synchronous=NORMAL`, fsyncs both files: that is where a durable
/// backend commit waits for the disk. Running it from a second connection lets the owner of the
/// main connection release its lock first, so readers of the main connection are never held up
/// by an fsync (SQLite lets readers run during a checkpoint; the checkpointing connection only
/// waits for the writer, which is the same thread that asks for the checkpoint).
///
/// Not `Sendable`: one thread uses it (the server's Raft loop).
public final class BackendCheckpointer {
    private let connection: OpaquePointer
    private let path: String

    /// Opens a second connection to the database at `path` (which a ``Backend`` has opened in
    /// WAL mode). `syncs` false skips the fsyncs (`--unsafe-no-fsync`).
    public init(path: String, syncs: Bool = true) throws(BackendError) {
        self.path = path
        var handle: OpaquePointer?
        let result = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(result))
            sqlite3_close_v2(handle)
            throw BackendError(code: result, message: message, operation: "open checkpointer \(path)")
        }
        connection = handle
        sqlite3_extended_result_codes(handle, 1)
        // A reader of the main connection may briefly hold the snapshot a full checkpoint waits
        // for; give it time rather than failing the durable commit.
        sqlite3_busy_timeout(handle, 10_000)
        let pragma = syncs ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=OFF"
        guard sqlite3_exec(handle, pragma, nil, nil, nil) == SQLITE_OK else {
            let error = BackendError(code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), operation: pragma)
            sqlite3_close_v2(handle)
            throw error
        }
    }

    deinit {
        sqlite3_close_v2(connection)
    }

    /// Copies every committed page into the database file and syncs it: afterwards every
    /// commit so far is durable (the main connection's ``Backend/sync()`` without its lock).
    public func checkpointFully() throws(BackendError) {
        try checkpoint(SQLITE_CHECKPOINT_FULL, "FULL")
    }

    /// Copies what it can without waiting for anyone; keeps the WAL file from growing without
    /// bound when automatic checkpoints are off.
    public func checkpointPassively() throws(BackendError) {
        do {
            try checkpoint(SQLITE_CHECKPOINT_PASSIVE, "PASSIVE")
        } catch where error.code & 0xff == SQLITE_BUSY {
            // Another checkpoint is running; the next one catches up.
        }
    }

    private func checkpoint(_ mode: Int32, _ name: String) throws(BackendError) {
        let result = sqlite3_wal_checkpoint_v2(connection, nil, mode, nil, nil)
        guard result == SQLITE_OK else {
            throw BackendError(
                code: result, message: String(cString: sqlite3_errmsg(connection)),
                operation: "wal_checkpoint(\(name)) \(path)")
        }
    }
}
