public import EtcdRaft
public import Logging

/// Raft snapshot files, `%016x-%016x.snap` (term, index) in one directory
/// (`<data-dir>/member/snap/`), as etcd's `snap.Snapshotter`.
///
/// A file is the snapshot's metadata and data behind a CRC-32C (see `SnapshotFile`). Saving is
/// atomic (temporary file, fsync, rename, fsync of the directory), so a crash leaves the old set
/// of snapshots or the new one, never a half-written file under a `.snap` name. Loading takes the
/// newest file that verifies; a damaged one is renamed to `.broken` and loudly logged, and the
/// next older one is tried, as etcd does.
public final class Snapshotter {
    let fileSystem: any WALFileSystem
    public let directory: String
    let logger: Logger

    static let suffix = ".snap"

    public init(
        directory: String,
        fileSystem: any WALFileSystem = POSIXFileSystem(),
        logger: Logger = Logger(label: "etcd.snap")
    ) {
        self.directory = directory
        self.fileSystem = fileSystem
        self.logger = logger
    }

    /// The file name of a snapshot: term, then index, 16 hex digits each.
    public static func fileName(for metadata: SnapshotMetadata) -> String {
        hex16(metadata.term) + "-" + hex16(metadata.index) + suffix
    }

    /// Writes `snapshot` durably. An empty snapshot (index 0) is not written, as in etcd.
    public func save(_ snapshot: Snapshot) throws(WALError) {
        guard !snapshot.isEmpty else { return }
        try fileSystem.makeDirectory(directory)
        let path = joinPath(directory, Self.fileName(for: snapshot.metadata))
        let temporaryPath = path + ".tmp"
        let file = try fileSystem.openFile(temporaryPath, create: true)
        defer { file.close() }
        try file.truncate(to: 0)
        try file.write(SnapshotFile.encode(snapshot), at: 0)
        try file.sync(dataOnly: false)
        try fileSystem.rename(temporaryPath, to: path)
        try fileSystem.syncDirectory(directory)
        logger.info(
            "saved snapshot",
            metadata: ["file": "\(path)", "index": "\(snapshot.metadata.index)", "term": "\(snapshot.metadata.term)"]
        )
    }

    /// Names of the snapshot files, newest first.
    public func snapshotNames() throws(WALError) -> [String] {
        guard fileSystem.fileExists(directory) else { return [] }
        return try fileSystem.fileNames(in: directory).filter { isSnapshotName($0) }.sorted(by: >)
    }

    /// The newest snapshot that verifies, restricted to those whose (index, term) appears in
    /// `markers` when given: the WAL's snapshot markers, so that replay can start from it (etcd's
    /// `LoadNewestAvailable`). Throws `.noSnapshot` when none qualifies.
    public func loadNewest(matching markers: [WALSnapshotMarker]? = nil) throws(WALError) -> Snapshot {
        try removeTemporaryFiles()
        let wanted = markers.map { Set($0.map { Self.fileName(for: SnapshotMetadata(index: $0.index, term: $0.term)) }) }
        for name in try snapshotNames() {
            if let wanted, !wanted.contains(name) { continue }
            let path = joinPath(directory, name)
            do {
                return try load(path: path)
            } catch {
                logger.error(
                    "snapshot file is damaged; renaming it to .broken and trying an older one",
                    metadata: ["file": "\(path)", "error": "\(error)"]
                )
                try fileSystem.rename(path, to: path + ".broken")
                try fileSystem.syncDirectory(directory)
            }
        }
        throw .noSnapshot(directory: directory)
    }

    /// Reads and verifies one snapshot file.
    public func load(path: String) throws(WALError) -> Snapshot {
        let bytes = try fileSystem.readWholeFile(path)
        let snapshot = try SnapshotFile.decode(bytes, path: path)
        // Pair check: the name must agree with the contents it promises.
        let expected = Self.fileName(for: snapshot.metadata)
        guard path.hasSuffix("/" + expected) || path == expected else {
            throw .corruptSnapshot(path: path, reason: "contents are for \(expected)")
        }
        return snapshot
    }

    /// Removes the oldest snapshot files while more than `maxSnapshots` remain (etcd's
    /// `--max-snapshots`; 0 keeps everything). Returns the names removed.
    @discardableResult
    public func purge(maxSnapshots: Int = 5) throws(WALError) -> [String] {
        guard maxSnapshots > 0 else { return [] }
        let names = try snapshotNames()
        guard names.count > maxSnapshots else { return [] }
        let removed = Array(names[maxSnapshots...])
        for name in removed { try fileSystem.removeFile(joinPath(directory, name)) }
        try fileSystem.syncDirectory(directory)
        logger.info("purged snapshots", metadata: ["snap_dir": "\(directory)", "removed": "\(removed)"])
        return removed
    }

    private func isSnapshotName(_ name: String) -> Bool {
        let characters = Array(name.utf8)
        return characters.count == 38 && name.hasSuffix(Self.suffix) && characters[16] == UInt8(ascii: "-")
            && parseHex16(characters[0..<16]) != nil && parseHex16(characters[17..<33]) != nil
    }

    private func removeTemporaryFiles() throws(WALError) {
        guard fileSystem.fileExists(directory) else { return }
        for name in try fileSystem.fileNames(in: directory) where name.hasSuffix(Self.suffix + ".tmp") {
            logger.warning("removing a snapshot left half-written by a crash", metadata: ["file": "\(name)"])
            try fileSystem.removeFile(joinPath(directory, name))
        }
    }
}

/// The bytes of a snapshot file, integers little-endian:
///
///     offset 0   8 bytes  magic "etcdsnap"
///     offset 8   u32      CRC-32C of everything from offset 12 to the end
///     offset 12  u64 index, u64 term
///                u32 voter count, then u64 per voter; u32 learner count, then u64 per learner
///                u64 data length, then the data
enum SnapshotFile {
    static let magic = Array("etcdsnap".utf8)

    static func encode(_ snapshot: Snapshot) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(snapshot.data.count + 64)
        let metadata = snapshot.metadata
        body.appendLittleEndian(metadata.index)
        body.appendLittleEndian(metadata.term)
        body.appendLittleEndian(UInt32(metadata.confState.voters.count))
        for voter in metadata.confState.voters { body.appendLittleEndian(voter.rawValue) }
        body.appendLittleEndian(UInt32(metadata.confState.learners.count))
        for learner in metadata.confState.learners { body.appendLittleEndian(learner.rawValue) }
        body.appendLittleEndian(UInt64(snapshot.data.count))
        body.append(contentsOf: snapshot.data)
        var bytes = magic
        bytes.appendLittleEndian(CRC32C.checksum(body))
        bytes.append(contentsOf: body)
        return bytes
    }

    static func decode(_ bytes: [UInt8], path: String) throws(WALError) -> Snapshot {
        guard bytes.count >= 12, Array(bytes[0..<8]) == magic else {
            throw .corruptSnapshot(path: path, reason: "not a snapshot file (\(bytes.count) bytes, bad magic)")
        }
        let all = bytes[...]
        let crc = UInt32(truncatingIfNeeded: all.littleEndianUInt(at: 8, width: 4))
        guard CRC32C.checksum(bytes[12...]) == crc else { throw .corruptSnapshot(path: path, reason: "CRC mismatch") }
        var reader = Reader(bytes: all, offset: 12)
        guard let index = reader.uint64(), let term = reader.uint64(), let voters = reader.nodeIDs(),
            let learners = reader.nodeIDs(), let dataCount = reader.uint64(), dataCount == UInt64(reader.remaining)
        else { throw .corruptSnapshot(path: path, reason: "truncated or malformed body") }
        let metadata = SnapshotMetadata(
            index: index,
            term: term,
            confState: ConfState(voters: voters, learners: learners)
        )
        return Snapshot(metadata: metadata, data: Array(bytes[reader.offset...]))
    }

    /// Bounds-checked reading: every read returns nil past the end.
    struct Reader {
        let bytes: ArraySlice<UInt8>
        var offset: Int
        var remaining: Int { bytes.endIndex - offset }

        mutating func uint64() -> UInt64? {
            guard remaining >= 8 else { return nil }
            defer { offset += 8 }
            return bytes.littleEndianUInt64(at: offset)
        }

        mutating func nodeIDs() -> [NodeID]? {
            guard remaining >= 4 else { return nil }
            let count = Int(bytes.littleEndianUInt(at: offset, width: 4))
            offset += 4
            guard count <= remaining / 8 else { return nil }
            var ids: [NodeID] = []
            for _ in 0..<count {
                guard let id = uint64() else { return nil }
                ids.append(NodeID(id))
            }
            return ids
        }
    }
}
