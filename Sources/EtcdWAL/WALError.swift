/// Everything the WAL and the snapshot files can fail with.
///
/// Operating errors (I/O failures, corrupt files, a second writer) throw and never lose data that
/// was acknowledged; a broken invariant of the caller traps with a `precondition` instead. Every
/// case about bytes on disk names the file and byte offset, so that an operator can look at it.
public enum WALError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A system call failed. `errno` is the C error number.
    case io(operation: String, path: String, errno: Int32)
    /// `WAL.create` found a log already in the directory.
    case alreadyExists(directory: String)
    /// `WAL.open` found no segment files in the directory.
    case notFound(directory: String)
    /// Another writer holds the lock on a segment file.
    case locked(path: String)
    /// A record that cannot be read (bad header, bad CRC, bad encoding) with valid data after
    /// it, or in a segment that is not the last: not a torn tail, so it is not repaired.
    case corruptRecord(path: String, offset: Int, reason: String)
    /// A record whose checksum is valid but whose predecessor CRC does not continue the chain:
    /// a record or a segment is missing or misplaced.
    case crcChainBreak(path: String, offset: Int, expected: UInt32, found: UInt32)
    /// Segment sequence numbers are not consecutive: a segment file is missing.
    case missingSegment(directory: String, expectedSequence: UInt64, found: String)
    /// Entries on disk skip an index (replay) or the segments do not cover the snapshot.
    case entryGap(path: String, offset: Int, expectedIndex: UInt64, foundIndex: UInt64)
    /// A segment's metadata record differs from the first segment's.
    case metadataConflict(path: String, offset: Int)
    /// The WAL has no snapshot marker at the index `open` was asked to start from.
    case snapshotNotFound(index: UInt64, term: UInt64)
    /// The WAL has a snapshot marker at that index, with another term.
    case snapshotMismatch(path: String, offset: Int, index: UInt64, expectedTerm: UInt64, foundTerm: UInt64)
    /// The last hard state commits an index that the log does not contain.
    case commitBeyondLog(commit: UInt64, lastIndex: UInt64)
    /// No readable snapshot file in the snapshot directory.
    case noSnapshot(directory: String)
    /// A snapshot file that fails its checksum or cannot be decoded.
    case corruptSnapshot(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let operation, let path, let errno):
            "wal: \(operation) \(path) failed: errno \(errno)"
        case .alreadyExists(let directory):
            "wal: a write-ahead log already exists in \(directory)"
        case .notFound(let directory):
            "wal: no write-ahead log segments in \(directory)"
        case .locked(let path):
            "wal: \(path) is locked by another writer"
        case .corruptRecord(let path, let offset, let reason):
            "wal: corrupt record in \(path) at offset \(offset): \(reason)"
        case .crcChainBreak(let path, let offset, let expected, let found):
            "wal: CRC chain broken in \(path) at offset \(offset): expected previous CRC "
                + "\(hex(expected)), record carries \(hex(found))"
        case .missingSegment(let directory, let expectedSequence, let found):
            "wal: segment with sequence \(hex(expectedSequence)) missing in \(directory) (found \(found))"
        case .entryGap(let path, let offset, let expectedIndex, let foundIndex):
            "wal: entry index gap in \(path) at offset \(offset): expected at most \(expectedIndex), "
                + "found \(foundIndex)"
        case .metadataConflict(let path, let offset):
            "wal: metadata in \(path) at offset \(offset) conflicts with earlier segments"
        case .snapshotNotFound(let index, let term):
            "wal: no snapshot marker for index \(index) term \(term)"
        case .snapshotMismatch(let path, let offset, let index, let expectedTerm, let foundTerm):
            "wal: snapshot marker in \(path) at offset \(offset) for index \(index) has term \(foundTerm), "
                + "expected \(expectedTerm)"
        case .commitBeyondLog(let commit, let lastIndex):
            "wal: hard state commits index \(commit) but the log ends at \(lastIndex)"
        case .noSnapshot(let directory):
            "snap: no available snapshot in \(directory)"
        case .corruptSnapshot(let path, let reason):
            "snap: corrupt snapshot \(path): \(reason)"
        }
    }
}

private func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
