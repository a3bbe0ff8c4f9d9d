#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The real file system, through the POSIX calls etcd's `fileutil` uses: pwrite, fdatasync,
/// fsync, fallocate, rename and flock.
public final class POSIXFileSystem: WALFileSystem {
    public init() {}

    public func makeDirectory(_ path: String) throws(WALError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o700) != 0, errno != EEXIST {
                throw .io(operation: "mkdir", path: prefix, errno: errno)
            }
            prefix += "/"
        }
    }

    public func fileNames(in directory: String) throws(WALError) -> [String] {
        guard let handle = opendir(directory) else { throw .io(operation: "opendir", path: directory, errno: errno) }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: pointer.pointee)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    public func openFile(_ path: String, create: Bool) throws(WALError) -> any WALFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
        let descriptor = open(path, flags, 0o600)
        guard descriptor >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        return POSIXFile(path: path, descriptor: descriptor)
    }

    public func rename(_ source: String, to destination: String) throws(WALError) {
        #if canImport(Glibc)
        let result = Glibc.rename(source, destination)
        #else
        let result = Darwin.rename(source, destination)
        #endif
        guard result == 0 else { throw .io(operation: "rename", path: source + " -> " + destination, errno: errno) }
    }

    public func removeFile(_ path: String) throws(WALError) {
        guard unlink(path) == 0 else { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    public func syncDirectory(_ path: String) throws(WALError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        defer { _ = closeDescriptor(descriptor) }
        guard fsync(descriptor) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
    }
}

/// One descriptor. Not thread-safe: it belongs to the WAL's single owner.
final class POSIXFile: WALFile {
    let path: String
    private var descriptor: Int32

    init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close() }

    private func checkOpen(_ operation: String) throws(WALError) {
        guard descriptor >= 0 else { throw .io(operation: operation, path: path, errno: EBADF) }
    }

    func size() throws(WALError) -> Int {
        try checkOpen("fstat")
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        return Int(status.st_size)
    }

    func read(at offset: Int, count: Int) throws(WALError) -> [UInt8] {
        try checkOpen("pread")
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        // pread may return fewer bytes than asked (signals, large reads); loop until the end of
        // the file or the count.
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress.map { $0 + done }, count - done, off_t(offset + done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "pread", path: path, errno: errno)
            }
            if result == 0 { break }
            done += result
        }
        bytes.removeLast(count - done)
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(WALError) {
        try checkOpen("pwrite")
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                pwrite(descriptor, buffer.baseAddress.map { $0 + done }, bytes.count - done, off_t(offset + done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "pwrite", path: path, errno: errno)
            }
            done += result
        }
    }

    func truncate(to size: Int) throws(WALError) {
        try checkOpen("ftruncate")
        guard ftruncate(descriptor, off_t(size)) == 0 else {
            throw .io(operation: "ftruncate", path: path, errno: errno)
        }
    }

    func preallocate(size: Int) throws(WALError) {
        try checkOpen("fallocate")
        guard try self.size() < size else { return }
        #if canImport(Glibc)
        // posix_fallocate is fallocate(2) with mode 0: it reserves the blocks and extends the
        // size, as etcd's Preallocate(extendFile: true). It returns the error rather than
        // setting errno. File systems without it fall back to ftruncate, which reads back as
        // zeros too (without reserving blocks).
        let failure = posix_fallocate(descriptor, 0, off_t(size))
        if failure == 0 { return }
        guard failure == EOPNOTSUPP || failure == ENOSYS || failure == EINVAL else {
            throw .io(operation: "posix_fallocate", path: path, errno: failure)
        }
        #endif
        try truncate(to: size)
    }

    func sync(dataOnly: Bool) throws(WALError) {
        try checkOpen(dataOnly ? "fdatasync" : "fsync")
        #if canImport(Glibc)
        let result = dataOnly ? fdatasync(descriptor) : fsync(descriptor)
        #else
        let result = fsync(descriptor)
        #endif
        guard result == 0 else { throw .io(operation: dataOnly ? "fdatasync" : "fsync", path: path, errno: errno) }
    }

    func tryLock() throws(WALError) -> Bool {
        try checkOpen("flock")
        // A flock belongs to the open file description, which a child process forked by another
        // thread shares until it execs (O_CLOEXEC only closes it then). So a lock this process
        // just released can look held for a moment; a real second writer holds it for good.
        // Retrying for up to about a second tells the two apart.
        for attempt in 0..<Self.lockAttempts {
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return true }
            guard errno == EWOULDBLOCK else { throw .io(operation: "flock", path: path, errno: errno) }
            if attempt + 1 < Self.lockAttempts { usleep(10_000) }
        }
        return false
    }

    static let lockAttempts = 100

    func close() {
        guard descriptor >= 0 else { return }
        // Closing the descriptor drops its flock.
        _ = closeDescriptor(descriptor)
        descriptor = -1
    }
}

private func closeDescriptor(_ descriptor: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(descriptor)
    #else
    Darwin.close(descriptor)
    #endif
}
