internal import CSQLite

/// A prepared SQLite statement borrowed from the ``Backend``'s cache for the length of one
/// ``Backend/withStatement(_:_:)`` call.
///
/// Parameters are 1-based and columns 0-based, exactly as in the SQLite C API, so SQL and the
/// Swift that binds it can be read side by side.
public final class Statement {
    let handle: OpaquePointer
    let sql: String
    // The connection is needed for error messages; the backend outlives every statement it hands out.
    unowned let backend: Backend

    init(handle: OpaquePointer, sql: String, backend: Backend) {
        self.handle = handle
        self.sql = sql
        self.backend = backend
    }

    /// Binds a 64-bit integer to the 1-based parameter `index`.
    public func bind(_ value: Int64, at index: Int32) throws(BackendError) {
        try check(sqlite3_bind_int64(handle, index, value), "bind")
    }

    /// Binds a blob to the 1-based parameter `index`. An empty array binds an empty blob, not NULL.
    public func bind(_ value: [UInt8], at index: Int32) throws(BackendError) {
        let result: Int32
        if value.isEmpty {
            // sqlite3_bind_blob with a zero length and no pointer would bind NULL; etcd keys and
            // values may be empty and must come back as empty bytes.
            result = sqlite3_bind_zeroblob(handle, index, 0)
        } else {
            result = value.withUnsafeBytes { bytes in
                sqlite3_bind_blob(handle, index, bytes.baseAddress, Int32(bytes.count), transientDestructor)
            }
        }
        try check(result, "bind")
    }

    /// Binds UTF-8 text to the 1-based parameter `index`.
    public func bind(_ value: String, at index: Int32) throws(BackendError) {
        try check(sqlite3_bind_text(handle, index, value, -1, transientDestructor), "bind")
    }

    /// Advances the statement: `true` when a row is available, `false` when it has finished.
    public func step() throws(BackendError) -> Bool {
        let result = sqlite3_step(handle)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw backend.error(result, sql)
        }
    }

    /// Runs a statement that returns no rows (INSERT, UPDATE, DELETE).
    public func run() throws(BackendError) {
        while try step() {}
    }

    /// The integer in the 0-based column `index` of the current row.
    public func int64(at index: Int32) -> Int64 {
        sqlite3_column_int64(handle, index)
    }

    /// The blob in the 0-based column `index` of the current row (empty for NULL or an empty blob).
    public func bytes(at index: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, index))
        guard count > 0, let base = sqlite3_column_blob(handle, index) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The text in the 0-based column `index` of the current row.
    public func text(at index: Int32) -> String {
        guard let base = sqlite3_column_text(handle, index) else { return "" }
        return String(cString: base)
    }

    /// True when the 0-based column `index` of the current row is NULL.
    public func isNull(at index: Int32) -> Bool {
        sqlite3_column_type(handle, index) == SQLITE_NULL
    }

    /// The number of rows the last INSERT, UPDATE or DELETE changed.
    public var changes: Int {
        Int(sqlite3_changes(backend.connection))
    }

    /// Readies the statement for its next use: the cache hands the same object out again.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    private func check(_ result: Int32, _ what: String) throws(BackendError) {
        guard result == SQLITE_OK else { throw backend.error(result, "\(what) \(sql)") }
    }
}

/// SQLite's SQLITE_TRANSIENT (a destructor of -1) is a C macro Swift cannot import; it tells
/// SQLite to copy the bound bytes, which we need because Swift arrays may move after the call.
private var transientDestructor: sqlite3_destructor_type {
    unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
}
