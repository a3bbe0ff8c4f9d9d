#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file-system calls the backend needs, kept apart so the SQLite wrapper stays about SQL.
enum FileSystem {
    /// Creates `path` and any missing parents with mode 0700, as etcd creates its data directory
    /// (it holds the whole keyspace, so only the owner may read it).
    static func createDirectories(_ path: String) throws(BackendError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += component
            if mkdir(prefix, 0o700) != 0 {
                let failure = errno
                if failure != EEXIST {
                    throw BackendError(code: failure, message: String(cString: strerror(failure)), operation: "mkdir \(prefix)")
                }
                guard isDirectory(prefix) else {
                    throw BackendError(code: ENOTDIR, message: "exists and is not a directory", operation: "mkdir \(prefix)")
                }
            }
            prefix += "/"
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }
}
