/// The file operations the WAL and the snapshotter need, behind a protocol so that a simulator
/// can lose unsynced writes, tear writes or flip bits (FoundationDB and TigerBeetle swap their
/// storage the same way). `POSIXFileSystem` is the real one; `MemoryFileSystem` keeps files in
/// memory for tests.
///
/// Paths are plain strings joined with `/`; the WAL never needs anything fancier.
public protocol WALFileSystem: AnyObject {
    /// Creates `path` and any missing parents; succeeds if it already exists.
    func makeDirectory(_ path: String) throws(WALError)
    /// The names (not paths) of the entries in `directory`, sorted.
    func fileNames(in directory: String) throws(WALError) -> [String]
    func fileExists(_ path: String) -> Bool
    /// Opens a file for reading and writing, creating an empty one when `create` is true.
    func openFile(_ path: String, create: Bool) throws(WALError) -> any WALFile
    /// Atomically replaces `destination` with `source` (rename(2)).
    func rename(_ source: String, to destination: String) throws(WALError)
    func removeFile(_ path: String) throws(WALError)
    /// Makes the directory's entries (creations, renames, removals) durable.
    func syncDirectory(_ path: String) throws(WALError)
}

/// One open file. Offsets and sizes are in bytes.
public protocol WALFile: AnyObject {
    var path: String { get }
    func size() throws(WALError) -> Int
    /// Up to `count` bytes from `offset`; fewer at the end of the file.
    func read(at offset: Int, count: Int) throws(WALError) -> [UInt8]
    /// Writes all of `bytes` at `offset`, extending the file if needed.
    func write(_ bytes: [UInt8], at offset: Int) throws(WALError)
    func truncate(to size: Int) throws(WALError)
    /// Reserves space up to `size` bytes, extending the file with zeros (as etcd's
    /// `fileutil.Preallocate` with extendFile), so appends do not grow the file's metadata.
    func preallocate(size: Int) throws(WALError)
    /// fdatasync(2) when `dataOnly`, else fsync(2).
    func sync(dataOnly: Bool) throws(WALError)
    /// Takes an exclusive lock without blocking; false if someone else holds it.
    func tryLock() throws(WALError) -> Bool
    /// Releases the lock and the descriptor. Further calls fail.
    func close()
}

extension WALFileSystem {
    /// The whole file, read through one open descriptor.
    func readWholeFile(_ path: String) throws(WALError) -> [UInt8] {
        let file = try openFile(path, create: false)
        defer { file.close() }
        return try file.read(at: 0, count: try file.size())
    }
}

/// `directory` + "/" + `name`.
func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}
