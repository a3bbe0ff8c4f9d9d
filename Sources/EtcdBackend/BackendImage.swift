internal import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A consistent copy of a backend's database in a file of its own: what a leader streams to a
/// follower that lags behind the compacted log (etcd's `snap.DB` image, which etcd takes from a
/// bbolt read transaction in `backend.Snapshot()`).
///
/// The copy is made with SQLite's `VACUUM INTO` on a connection of its own that only reads: in
/// WAL mode that connection reads one committed state of the database (the last commit when its
/// read transaction starts) while the owner's connection keeps committing, so writers are never
/// held up and the image never contains a transaction that was open (uncommitted) at the time.
public enum BackendImage {
    /// Writes a consistent image of the database at `databasePath` (opened by a ``Backend`` in
    /// WAL mode, or closed) to `imagePath`, and returns its size in bytes.
    ///
    /// The image is written under `imagePath + ".tmp"`, synced, then renamed to `imagePath` and
    /// the directory synced: `imagePath` either does not exist or holds a complete image, even
    /// after a crash. `VACUUM INTO` itself never syncs its output, which is why the sync is ours.
    /// An existing file at `imagePath` is replaced. `syncs` false skips both syncs
    /// (`--unsafe-no-fsync`).
    @discardableResult
    public static func write(
        databaseAt databasePath: String, to imagePath: String, syncs: Bool = true
    ) throws(BackendError) -> Int64 {
        let temporary = imagePath + ".tmp"
        // A leftover from an interrupted attempt would make VACUUM INTO fail ("output file already exists").
        unlink(temporary)
        do {
            try vacuum(databasePath, into: temporary)
            let size = try ImageFile.sync(temporary, syncs: syncs)
            try ImageFile.rename(temporary, to: imagePath, syncingDirectory: syncs)
            return size
        } catch {
            unlink(temporary)
            throw error
        }
    }

    private static func vacuum(_ databasePath: String, into temporary: String) throws(BackendError) {
        var handle: OpaquePointer?
        // Read-only: this connection never writes the source, and cannot by mistake.
        let result = sqlite3_open_v2(databasePath, &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(result))
            sqlite3_close_v2(handle)
            throw BackendError(code: result, message: message, operation: "open image source \(databasePath)")
        }
        defer { sqlite3_close_v2(handle) }
        sqlite3_extended_result_codes(handle, 1)
        // A WAL reader only waits when another connection is recovering the WAL index; give it time.
        sqlite3_busy_timeout(handle, 10_000)
        var statement: OpaquePointer?
        let operation = "VACUUM INTO \(temporary)"
        guard sqlite3_prepare_v2(handle, "VACUUM INTO ?1", -1, &statement, nil) == SQLITE_OK, let statement else {
            let error = BackendError(
                code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), operation: operation)
            sqlite3_finalize(statement)
            throw error
        }
        defer { sqlite3_finalize(statement) }
        let transient = unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
        guard sqlite3_bind_text(statement, 1, temporary, -1, transient) == SQLITE_OK else {
            throw BackendError(
                code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), operation: operation)
        }
        let stepped = sqlite3_step(statement)
        guard stepped == SQLITE_DONE else {
            throw BackendError(code: stepped, message: String(cString: sqlite3_errmsg(handle)), operation: operation)
        }
    }
}

/// The file-system steps of making a file durable under its final name.
public enum ImageFile {
    /// Syncs the file at `path` to disk (unless `syncs` is false) and returns its size.
    @discardableResult
    public static func sync(_ path: String, syncs: Bool = true) throws(BackendError) -> Int64 {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw failure("open \(path)") }
        defer { close(descriptor) }
        if syncs, fsync(descriptor) != 0 { throw failure("fsync \(path)") }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw failure("stat \(path)") }
        return Int64(info.st_size)
    }

    /// Renames `source` to `destination` (replacing it atomically), then syncs the directory of
    /// `destination` so that the rename itself survives a power loss.
    public static func rename(_ source: String, to destination: String, syncingDirectory: Bool = true) throws(BackendError) {
        guard renameFile(source, destination) == 0 else { throw failure("rename \(source) to \(destination)") }
        if syncingDirectory { try syncDirectory(containing: destination) }
    }

    /// Syncs the directory holding `path` (its entries: creations, renames, removals).
    public static func syncDirectory(containing path: String) throws(BackendError) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { throw failure("open \(directory)") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw failure("fsync \(directory)") }
    }

    private static func renameFile(_ source: String, _ destination: String) -> Int32 {
        #if canImport(Glibc)
        Glibc.rename(source, destination)
        #else
        Darwin.rename(source, destination)
        #endif
    }

    private static func failure(_ operation: String) -> BackendError {
        let code = errno
        return BackendError(code: code, message: String(cString: strerror(code)), operation: operation)
    }
}

extension Backend {
    /// Writes a consistent image of this backend's database file to `imagePath` (see
    /// ``BackendImage/write(databaseAt:to:syncs:)``): the last commit, never the open
    /// transaction. Fails for an in-memory backend.
    @discardableResult
    public func writeImage(to imagePath: String, syncs: Bool = true) throws(BackendError) -> Int64 {
        guard let path else {
            throw BackendError(code: SQLITE_MISUSE, message: "an in-memory backend has no file", operation: "image")
        }
        return try BackendImage.write(databaseAt: path, to: imagePath, syncs: syncs)
    }
}
