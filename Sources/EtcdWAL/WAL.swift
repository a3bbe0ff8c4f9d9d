public import CoreMetrics
public import EtcdRaft
public import Logging

/// Settings of a WAL.
public struct WALOptions: Sendable, Hashable {
    /// The size a segment is preallocated to; a save that fills it starts the next segment
    /// (etcd's `SegmentSizeBytes`, 64 MB). Tests use a few kilobytes to exercise rotation.
    public var segmentSizeBytes: Int
    /// Where the duration of each fdatasync after an append goes (etcd's
    /// `etcd_disk_wal_fsync_duration_seconds`); nil records nothing. An instrument, not a
    /// setting: it takes no part in equality.
    public var fsyncDurations: CoreMetrics.Timer?

    public init(segmentSizeBytes: Int = 64 * 1024 * 1024) {
        precondition(segmentSizeBytes > 0, "wal: segment size \(segmentSizeBytes) must be positive")
        self.segmentSizeBytes = segmentSizeBytes
    }

    public static func == (left: WALOptions, right: WALOptions) -> Bool {
        left.segmentSizeBytes == right.segmentSizeBytes
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(segmentSizeBytes) }
}

/// What `WAL.open` read back.
public struct WALContents: Sendable, Hashable {
    /// The bytes given to `WAL.create` (the server's member and cluster IDs).
    public var metadata: [UInt8]
    /// The last hard state saved, or an empty one.
    public var hardState: HardState
    /// The entries after the snapshot marker that `open` started from, contiguous from
    /// `snapshot.index + 1`, later writes of an index having replaced earlier ones.
    public var entries: [Entry]
    public var snapshot: WALSnapshotMarker
}

/// etcd's write-ahead log: the durable record of Raft's hard state and entries, in segment files
/// `%016x-%016x.wal` under one directory (`<data-dir>/member/wal/`).
///
/// Use: `create` a new log with the server's metadata, or `open` an existing one at the snapshot
/// the server loaded, which replays the records after it and repairs a torn tail. Then, for every
/// `Ready`, `save(hardState:entries:sync:)` with `sync: ready.mustSync` before sending its
/// messages or acknowledging its writes; `saveSnapshot` when a snapshot is written, then
/// `releaseSegments(before:)` and `purgeSegments(maxWALs:)`.
///
/// On disk, a segment is a sequence of frames (see `RecordFrame`): the first segment starts with
/// a CRC record, the metadata and the empty snapshot marker; each later one with the CRC carried
/// over, the metadata and the current hard state. A save is one pwrite of all its frames.
///
/// Recovery is deliberately conservative. A damaged frame with nothing valid after it in the last
/// segment is a torn write and is cut away. A damaged frame with any valid frame after it is
/// reported, even though it could in principle be the torn middle of an unsynced write whose
/// later pages reached the disk first: telling the two apart would need to know which writes were
/// acknowledged, and guessing wrong would drop acknowledged data. (etcd instead truncates at a
/// record that has an all-zero sector.)
///
/// Not thread-safe: a WAL belongs to the one task that drives the Raft node. After an I/O error
/// every later call rethrows it: a failed fsync may have lost data, so the only safe way on is a
/// restart that replays what really is on disk (the "fsyncgate" lesson, and etcd's behaviour of
/// exiting on a WAL error).
public final class WAL {
    /// One open segment, locked against other writers until it is released.
    struct Segment {
        var name: SegmentName
        var file: any WALFile
    }

    let fileSystem: any WALFileSystem
    let directory: String
    let options: WALOptions
    let logger: Logger
    let metadata: [UInt8]

    /// Held segments, oldest first; the last is the tail that appends go to.
    var segments: [Segment]
    /// Where the next frame goes in the tail segment.
    var tailOffset: Int
    /// The chain value after the last frame written.
    var crc: UInt32
    /// The index of the last entry written (or of a later snapshot marker).
    public internal(set) var lastIndex: UInt64
    /// The last hard state written, repeated at the start of every new segment.
    public internal(set) var hardState: HardState
    var failure: WALError?
    var isClosed = false

    init(
        fileSystem: any WALFileSystem,
        directory: String,
        options: WALOptions,
        logger: Logger,
        metadata: [UInt8],
        segments: [Segment],
        tailOffset: Int,
        crc: UInt32,
        lastIndex: UInt64,
        hardState: HardState
    ) {
        precondition(!segments.isEmpty, "wal: a log needs a tail segment")
        self.fileSystem = fileSystem
        self.directory = directory
        self.options = options
        self.logger = logger
        self.metadata = metadata
        self.segments = segments
        self.tailOffset = tailOffset
        self.crc = crc
        self.lastIndex = lastIndex
        self.hardState = hardState
    }

    deinit {
        for segment in segments { segment.file.close() }
    }

    /// The names of the segment files this WAL holds locked, oldest first.
    public var heldSegmentNames: [String] { segments.map(\.name.fileName) }

    /// Whether `directory` holds any WAL segment (etcd's `wal.Exist`).
    public static func exists(directory: String, fileSystem: any WALFileSystem = POSIXFileSystem()) -> Bool {
        guard let names = try? fileSystem.fileNames(in: directory) else { return false }
        return names.contains { SegmentName(fileName: $0) != nil }
    }

    /// Creates a new log in `directory` (made if missing) whose first segment records `metadata`
    /// and the empty snapshot marker. The segment is written as a temporary file, synced and
    /// renamed, so a crash leaves either no log or a complete first segment.
    public static func create(
        directory: String,
        metadata: [UInt8],
        fileSystem: any WALFileSystem = POSIXFileSystem(),
        options: WALOptions = WALOptions(),
        logger: Logger = Logger(label: "etcd.wal")
    ) throws(WALError) -> WAL {
        try fileSystem.makeDirectory(directory)
        if exists(directory: directory, fileSystem: fileSystem) { throw .alreadyExists(directory: directory) }
        try removeTemporaryFiles(in: directory, fileSystem: fileSystem, logger: logger)
        let name = SegmentName(sequence: 0, firstIndex: 0)
        var header: [UInt8] = []
        var crc = RecordFrame.append(.crc(0), previousCRC: 0, to: &header)
        crc = RecordFrame.append(.metadata(metadata), previousCRC: crc, to: &header)
        crc = RecordFrame.append(.snapshot(.zero), previousCRC: crc, to: &header)
        let file = try createSegmentFile(
            name,
            header: header,
            directory: directory,
            fileSystem: fileSystem,
            options: options
        )
        // The directory itself may be new: make its entry in the parent durable too.
        if let parent = parentDirectory(of: directory) { try fileSystem.syncDirectory(parent) }
        logger.info("created WAL", metadata: ["wal_dir": "\(directory)", "segment": "\(name.fileName)"])
        return WAL(
            fileSystem: fileSystem,
            directory: directory,
            options: options,
            logger: logger,
            metadata: metadata,
            segments: [Segment(name: name, file: file)],
            tailOffset: header.count,
            crc: crc,
            lastIndex: 0,
            hardState: HardState()
        )
    }

    /// Writes a new segment's header records to `<name>.tmp`, preallocated and fsynced, renames it
    /// into place and fsyncs the directory (etcd's `cut` and `filePipeline`). Returns it locked.
    static func createSegmentFile(
        _ name: SegmentName,
        header: [UInt8],
        directory: String,
        fileSystem: any WALFileSystem,
        options: WALOptions
    ) throws(WALError) -> any WALFile {
        let path = joinPath(directory, name.fileName)
        let temporaryPath = path + ".tmp"
        if fileSystem.fileExists(temporaryPath) { try fileSystem.removeFile(temporaryPath) }
        let file = try fileSystem.openFile(temporaryPath, create: true)
        do throws(WALError) {
            guard try file.tryLock() else { throw .locked(path: temporaryPath) }
            try file.preallocate(size: options.segmentSizeBytes)
            try file.write(header, at: 0)
            // fsync, not fdatasync: the preallocation changed the file's size.
            try file.sync(dataOnly: false)
            try fileSystem.rename(temporaryPath, to: path)
            try fileSystem.syncDirectory(directory)
        } catch {
            file.close()
            throw error
        }
        // Reopen under the final name so that errors name the real file, and lock it again, as
        // etcd's cut does after its rename.
        file.close()
        let renamed = try fileSystem.openFile(path, create: false)
        guard try renamed.tryLock() else {
            renamed.close()
            throw .locked(path: path)
        }
        return renamed
    }

    static func removeTemporaryFiles(
        in directory: String,
        fileSystem: any WALFileSystem,
        logger: Logger
    ) throws(WALError) {
        for name in try fileSystem.fileNames(in: directory) where name.hasSuffix(SegmentName.suffix + ".tmp") {
            logger.warning(
                "removing a segment left half-created by a crash",
                metadata: ["wal_dir": "\(directory)", "file": "\(name)"]
            )
            try fileSystem.removeFile(joinPath(directory, name))
        }
    }

    static func parentDirectory(of path: String) -> String? {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    func checkUsable() throws(WALError) {
        precondition(!isClosed, "wal: used after close (last index \(lastIndex))")
        if let failure { throw failure }
    }

    /// Runs an I/O step; a failure poisons the WAL (see the type's documentation).
    func poisoning<T>(_ body: () throws(WALError) -> T) throws(WALError) -> T {
        do throws(WALError) {
            return try body()
        } catch {
            failure = error
            logger.error("WAL write failed; the WAL refuses further writes", metadata: ["error": "\(error)"])
            throw error
        }
    }
}
