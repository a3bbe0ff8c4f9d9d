internal import CSQLite

/// A failure reported by SQLite (or by the file system while preparing the data directory).
///
/// The backend never traps on I/O or corruption: the caller decides whether to retry, refuse to
/// start, or surface the error to a client, so everything needed to explain the failure travels
/// with the value.
public struct BackendError: Error, Hashable, Sendable, CustomStringConvertible {
    /// SQLite's (extended) result code, or `errno` when `operation` names a file-system call.
    public var code: Int32
    /// SQLite's own explanation (`sqlite3_errmsg`) or `strerror` text.
    public var message: String
    /// What the backend was doing, e.g. `open /data/member/db.sqlite` or the SQL being prepared.
    public var operation: String

    /// Creates an error value; the backend builds these, tests may too.
    public init(code: Int32, message: String, operation: String) {
        self.code = code
        self.message = message
        self.operation = operation
    }

    /// True when SQLite says the file is damaged or is not a database at all: the data directory
    /// needs an operator (restore from a snapshot), retrying will not help.
    public var isCorruption: Bool {
        let primary = code & 0xff
        return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
    }

    public var description: String {
        "backend: \(operation): \(message) (code \(code))"
    }
}
