#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive lock on a member's data directory for as long as the member runs.
///
/// Two processes on one data directory would each keep their own index of the same SQLite file
/// and hand out the same revisions; the second one is refused at start instead. The lock is an
/// advisory `flock` on `<data-dir>/member/lock`, released by the kernel if the process dies.
final class DataDirectoryLock {
    private let descriptor: Int32

    init(dataDirectory: String) throws(ConfigurationError) {
        let memberDirectory = dataDirectory + "/member"
        for directory in [dataDirectory, memberDirectory] {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw .unsupported("cannot create data directory \(directory): \(String(cString: strerror(errno)))")
            }
        }
        let path = memberDirectory + "/lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw .unsupported("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "it is in use by another etcd process" : String(cString: strerror(errno))
            close(descriptor)
            throw .unsupported("cannot lock data directory \(dataDirectory): \(reason)")
        }
        self.descriptor = descriptor
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
