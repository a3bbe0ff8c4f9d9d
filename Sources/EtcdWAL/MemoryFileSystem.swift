/// A file system in memory, for tests and simulation: no durability model, every write is
/// visible at once. Locks behave like flock(2) between distinct open files.
///
/// Not thread-safe: it belongs to the one task that drives the WAL.
public final class MemoryFileSystem: WALFileSystem {
    /// One file's bytes, shared by every handle opened on it (and surviving a rename).
    final class Contents {
        var bytes: [UInt8] = []
        var lockHolder: ObjectIdentifier?
    }

    private var directories: Set<String> = ["/"]
    private var files: [String: Contents] = [:]

    public init() {}

    /// The bytes of a file, for tests that corrupt or inspect it.
    public func contents(of path: String) -> [UInt8]? { files[path]?.bytes }

    /// Replaces the bytes of an existing or new file, for tests that corrupt it.
    public func setContents(of path: String, to bytes: [UInt8]) {
        let contents = files[path] ?? Contents()
        contents.bytes = bytes
        files[path] = contents
    }

    public func makeDirectory(_ path: String) throws(WALError) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            directories.insert(prefix)
        }
    }

    public func fileNames(in directory: String) throws(WALError) -> [String] {
        let normalized = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        guard directories.contains(normalized) else { throw .io(operation: "opendir", path: directory, errno: 2) }
        let prefix = normalized + "/"
        var names: [String] = []
        for path in files.keys where path.hasPrefix(prefix) {
            let name = path.dropFirst(prefix.count)
            if !name.contains("/") { names.append(String(name)) }
        }
        for path in directories where path.hasPrefix(prefix) {
            let name = path.dropFirst(prefix.count)
            if !name.isEmpty && !name.contains("/") { names.append(String(name)) }
        }
        return names.sorted()
    }

    public func fileExists(_ path: String) -> Bool {
        files[path] != nil || directories.contains(path)
    }

    public func openFile(_ path: String, create: Bool) throws(WALError) -> any WALFile {
        if let contents = files[path] { return MemoryFile(path: path, contents: contents) }
        guard create else { throw .io(operation: "open", path: path, errno: 2) }
        let contents = Contents()
        files[path] = contents
        return MemoryFile(path: path, contents: contents)
    }

    public func rename(_ source: String, to destination: String) throws(WALError) {
        guard let contents = files.removeValue(forKey: source) else {
            throw .io(operation: "rename", path: source + " -> " + destination, errno: 2)
        }
        files[destination] = contents
    }

    public func removeFile(_ path: String) throws(WALError) {
        guard files.removeValue(forKey: path) != nil else { throw .io(operation: "unlink", path: path, errno: 2) }
    }

    public func syncDirectory(_ path: String) throws(WALError) {}
}

final class MemoryFile: WALFile {
    let path: String
    private var contents: MemoryFileSystem.Contents?

    init(path: String, contents: MemoryFileSystem.Contents) {
        self.path = path
        self.contents = contents
    }

    deinit { close() }

    private func open(_ operation: String) throws(WALError) -> MemoryFileSystem.Contents {
        guard let contents else { throw .io(operation: operation, path: path, errno: 9) }
        return contents
    }

    func size() throws(WALError) -> Int { try open("fstat").bytes.count }

    func read(at offset: Int, count: Int) throws(WALError) -> [UInt8] {
        let bytes = try open("pread").bytes
        guard offset < bytes.count else { return [] }
        return Array(bytes[offset..<min(bytes.count, offset + count)])
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(WALError) {
        let contents = try open("pwrite")
        if contents.bytes.count < offset + bytes.count {
            contents.bytes.append(contentsOf: repeatElement(0, count: offset + bytes.count - contents.bytes.count))
        }
        contents.bytes.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    func truncate(to size: Int) throws(WALError) {
        let contents = try open("ftruncate")
        if size < contents.bytes.count {
            contents.bytes.removeLast(contents.bytes.count - size)
        } else {
            contents.bytes.append(contentsOf: repeatElement(0, count: size - contents.bytes.count))
        }
    }

    func preallocate(size: Int) throws(WALError) {
        if try self.size() < size { try truncate(to: size) }
    }

    func sync(dataOnly: Bool) throws(WALError) { _ = try open("fsync") }

    func tryLock() throws(WALError) -> Bool {
        let contents = try open("flock")
        let me = ObjectIdentifier(self)
        if let holder = contents.lockHolder, holder != me { return false }
        contents.lockHolder = me
        return true
    }

    func close() {
        if let contents, contents.lockHolder == ObjectIdentifier(self) { contents.lockHolder = nil }
        contents = nil
    }
}
