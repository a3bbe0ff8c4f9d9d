import EtcdRaft

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The wire form of a snapshot connection, after its handshake (kind `.snapshot`): etcd's
/// rafthttp `snapshotSender` posts the MsgSnap and then the `snap.DB` image as one HTTP body on a
/// connection of its own; here the same travels as
///
/// - a header: the image's size (u64), then the MsgSnap as a frame of one message
///   (`PeerMessageCodec`, length prefix included);
/// - chunks: a u32 length (1 through ``maxChunkBytes``) and that many image bytes, until the
///   announced size is reached;
/// - the end: a u32 zero and the SHA-256 of the whole image (32 bytes).
///
/// The receiver answers one byte, ``accepted`` once the image is stored, synced and the MsgSnap
/// handed to Raft, or ``refused``; the sender reports the snapshot finished only on
/// ``accepted`` (etcd's sender reports success when the receiver's HTTP response says so).
/// Integers are little-endian. Every size is checked against what was announced and the
/// receiver's limits before anything is buffered for it.
enum PeerSnapshotStream {
    /// Largest chunk; the sender's chunks are at most this, and the receiver refuses larger ones.
    static let maxChunkBytes = 1 << 20
    /// Largest header frame: a MsgSnap carries no log entries and an empty snapshot body, only
    /// the configuration's member IDs, so this is ample.
    static let maxHeaderFrameBytes = 1 << 20
    /// Bytes the receiver may hold that have arrived but are not yet in the file. Reading stops
    /// while a chunk is being written, so only what one read brought in can pile up behind it;
    /// past this bound the connection is refused (see `PeerSnapshotReceiver`).
    static let maxBufferedBytes = 4 << 20
    static let digestBytes = 32
    static let accepted: UInt8 = 1
    static let refused: UInt8 = 0

    /// The name of a received image, from the snapshot's term and index as etcd names snapshot
    /// files (16 hex digits each).
    static func fileName(term: UInt64, index: UInt64) -> String {
        "\(hex16(term))-\(hex16(index)).snap.db"
    }

    private static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}

/// Why a snapshot was not sent or not received.
enum PeerSnapshotError: Error, Hashable, Sendable, CustomStringConvertible {
    case notAccepted
    case notASnapshot
    case unknownPeer
    case alreadyInFlight
    case tooLarge(bytes: UInt64, limit: UInt64)
    case badHeader(String)
    case chunkTooLarge(Int)
    case sizeMismatch(announced: UInt64, received: UInt64)
    case digestMismatch
    case trailingBytes
    case image(String)
    case file(String)
    case connection(String)

    var description: String {
        switch self {
        case .notAccepted: "this member does not accept snapshots"
        case .notASnapshot: "the message is not a MsgSnap with a snapshot"
        case .unknownPeer: "the snapshot is for a member that is not a peer"
        case .alreadyInFlight: "a snapshot to or from this peer is already in flight"
        case .tooLarge(let bytes, let limit): "snapshot image of \(bytes) bytes exceeds the limit of \(limit)"
        case .badHeader(let reason): "snapshot header refused: \(reason)"
        case .chunkTooLarge(let bytes): "snapshot chunk of \(bytes) bytes exceeds \(PeerSnapshotStream.maxChunkBytes)"
        case .sizeMismatch(let announced, let received):
            "snapshot stream announced \(announced) bytes and carried \(received)"
        case .digestMismatch: "snapshot image does not match its SHA-256"
        case .trailingBytes: "bytes after the end of a snapshot stream"
        case .image(let reason): "snapshot image: \(reason)"
        case .file(let reason): "snapshot file: \(reason)"
        case .connection(let reason): "snapshot connection: \(reason)"
        }
    }
}

/// The POSIX file calls of both ends, run on a thread pool (never on an event loop).
enum SnapshotFile {
    static func errorText(_ operation: String) -> String {
        "\(operation): \(String(cString: strerror(errno)))"
    }

    /// Creates the file at `path` (and its directory, mode 0700, if missing) for writing.
    static func create(_ path: String) throws(PeerSnapshotError) -> Int32 {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let directory = String(path[..<slash])
            if mkdir(directory, 0o700) != 0, errno != EEXIST { throw .file(errorText("mkdir \(directory)")) }
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .file(errorText("create \(path)")) }
        return descriptor
    }

    static func openForReading(_ path: String) throws(PeerSnapshotError) -> (descriptor: Int32, bytes: UInt64) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .image(errorText("open \(path)")) }
        // The size by seeking to the end and back: C's `stat` struct resolves through whichever
        // module of the target imported it first on Linux (Glibc or CoreFoundation), which made
        // this file's build depend on its neighbours.
        let size = lseek(descriptor, 0, SEEK_END)
        guard size >= 0, lseek(descriptor, 0, SEEK_SET) == 0 else {
            let reason = errorText("seek \(path)")
            close(descriptor)
            throw .image(reason)
        }
        return (descriptor, UInt64(size))
    }

    /// Writes all of `bytes`, retrying short writes and interruptions.
    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws(PeerSnapshotError) {
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw .file(errorText("write"))
            }
            offset += written
        }
    }

    /// Reads up to `count` bytes; fewer only at the end of the file.
    static func readChunk(_ descriptor: Int32, count: Int) throws(PeerSnapshotError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = buffer.withUnsafeMutableBytes { raw in
                read(descriptor, raw.baseAddress.map { $0 + filled }, count - filled)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .image(errorText("read"))
            }
            if got == 0 { break }
            filled += got
        }
        buffer.removeLast(count - filled)
        return buffer
    }

    /// Syncs and closes `descriptor`, renames `temporary` to `final` and syncs the directory:
    /// `final` appears only complete (etcd's snap.DB is written the same way, via a `.tmp` file).
    static func commit(_ descriptor: Int32, temporary: String, final: String, syncs: Bool) throws(PeerSnapshotError) {
        if syncs, fsync(descriptor) != 0 {
            let reason = errorText("fsync \(temporary)")
            close(descriptor)
            throw .file(reason)
        }
        close(descriptor)
        guard rename(temporary, final) == 0 else { throw .file(errorText("rename \(temporary)")) }
        guard syncs else { return }
        let directory = String(final[..<(final.lastIndex(of: "/") ?? final.startIndex)])
        let handle = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard handle >= 0 else { throw .file(errorText("open \(directory)")) }
        defer { close(handle) }
        guard fsync(handle) == 0 else { throw .file(errorText("fsync \(directory)")) }
    }

    /// Closes `descriptor` (if any) and removes `path`: what a refused transfer leaves is nothing.
    static func discard(_ descriptor: Int32?, _ path: String) {
        if let descriptor { close(descriptor) }
        unlink(path)
    }
}
