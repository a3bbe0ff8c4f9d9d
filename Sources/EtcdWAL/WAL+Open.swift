import EtcdRaft
public import Logging

extension WAL {
    /// Opens the log in `directory` for appending, replaying every record after the snapshot
    /// marker `snapshot` (the snapshot the server loaded; `.zero` without one).
    ///
    /// Replay starts in the last segment whose first index is at most `snapshot.index` and must
    /// find that marker (etcd's `ErrSnapshotNotFound` otherwise). A torn write at the end of the
    /// last segment is truncated away and logged; damage anywhere else throws, naming the file
    /// and offset, because dropping it could drop acknowledged writes.
    public static func open(
        directory: String,
        at snapshot: WALSnapshotMarker,
        fileSystem: any WALFileSystem = POSIXFileSystem(),
        options: WALOptions = WALOptions(),
        logger: Logger = Logger(label: "etcd.wal")
    ) throws(WALError) -> (wal: WAL, contents: WALContents) {
        let names = try selectSegments(directory: directory, from: snapshot.index, fileSystem: fileSystem)
        var segments: [Segment] = []
        do throws(WALError) {
            for name in names {
                let path = joinPath(directory, name.fileName)
                let file = try fileSystem.openFile(path, create: false)
                segments.append(Segment(name: name, file: file))
                guard try file.tryLock() else { throw .locked(path: path) }
            }
            // Only once the segments are ours: another writer's rotation may own a temporary file.
            try removeTemporaryFiles(in: directory, fileSystem: fileSystem, logger: logger)
            var replay = Replay(snapshot: snapshot)
            for (position, segment) in segments.enumerated() {
                try replay.read(segment, isLast: position == segments.count - 1, options: options, logger: logger)
            }
            let contents = try replay.finish(firstPath: joinPath(directory, names[0].fileName))
            let wal = WAL(
                fileSystem: fileSystem,
                directory: directory,
                options: options,
                logger: logger,
                metadata: contents.metadata,
                segments: segments,
                tailOffset: replay.tailOffset,
                crc: replay.crc ?? 0,
                lastIndex: replay.lastIndex,
                hardState: contents.hardState
            )
            logger.info(
                "opened WAL",
                metadata: [
                    "wal_dir": "\(directory)", "snapshot_index": "\(snapshot.index)",
                    "entries": "\(contents.entries.count)", "last_index": "\(replay.lastIndex)",
                    "segments": "\(segments.count)",
                ]
            )
            return (wal, contents)
        } catch {
            for segment in segments { segment.file.close() }
            throw error
        }
    }

    /// The segments replay reads: from the last one whose first index is at most `index`, to the
    /// end, after checking that no sequence number is missing (etcd's `selectWALFiles`).
    static func selectSegments(
        directory: String,
        from index: UInt64,
        fileSystem: any WALFileSystem
    ) throws(WALError) -> [SegmentName] {
        let names = try fileSystem.fileNames(in: directory).compactMap(SegmentName.init(fileName:)).sorted()
        guard !names.isEmpty else { throw .notFound(directory: directory) }
        for (previous, next) in zip(names, names.dropFirst()) {
            guard next.sequence == previous.sequence + 1 else {
                throw .missingSegment(
                    directory: directory,
                    expectedSequence: previous.sequence + 1,
                    found: next.fileName
                )
            }
            guard next.firstIndex >= previous.firstIndex else {
                throw .corruptRecord(
                    path: joinPath(directory, next.fileName),
                    offset: 0,
                    reason: "segment starts at index \(next.firstIndex), before its predecessor \(previous.fileName)"
                )
            }
        }
        guard let start = names.lastIndex(where: { $0.firstIndex <= index }) else {
            throw .entryGap(
                path: joinPath(directory, names[0].fileName),
                offset: 0,
                expectedIndex: index + 1,
                foundIndex: names[0].firstIndex
            )
        }
        return Array(names[start...])
    }
}

/// The state replay builds up, segment by segment.
struct Replay {
    let snapshot: WALSnapshotMarker
    var metadata: [UInt8]?
    var hardState = HardState()
    var entries: [Entry] = []
    var matchedSnapshot = false
    /// The chain value after the last frame read; nil before the first.
    var crc: UInt32?
    var lastIndex: UInt64
    var tailOffset = 0

    init(snapshot: WALSnapshotMarker) {
        self.snapshot = snapshot
        self.lastIndex = snapshot.index
    }

    mutating func read(_ segment: WAL.Segment, isLast: Bool, options: WALOptions, logger: Logger) throws(WALError) {
        let file = segment.file
        let path = file.path
        let bytes = try file.read(at: 0, count: try file.size())
        let scan = SegmentScan(bytes)
        for (position, frame) in scan.frames.enumerated() {
            try checkChain(frame, isFirst: position == 0, path: path)
            crc = frame.crc
            try apply(frame, path: path)
        }
        guard !scan.frames.isEmpty else {
            // Segments are complete before they are renamed into place, so an empty one is damage.
            throw .corruptRecord(path: path, offset: 0, reason: "segment has no CRC record")
        }
        switch scan.end {
        case .clean(let offset):
            tailOffset = offset
        case .corrupt(let offset, let reason):
            throw .corruptRecord(path: path, offset: offset, reason: reason)
        case .torn(let offset, let reason):
            // Only the last segment can end in a torn write: `cut` syncs a segment before the
            // next one exists.
            guard isLast else { throw .corruptRecord(path: path, offset: offset, reason: reason) }
            logger.warning(
                "repairing a torn write at the end of the WAL",
                metadata: [
                    "file": "\(path)", "offset": "\(offset)", "reason": "\(reason)",
                    "discarded_bytes": "\(bytes.count - offset)",
                ]
            )
            try file.truncate(to: offset)
            try file.preallocate(size: options.segmentSizeBytes)
            try file.sync(dataOnly: false)
            tailOffset = offset
        }
        if isLast && bytes.count < options.segmentSizeBytes {
            try file.preallocate(size: options.segmentSizeBytes)
            try file.sync(dataOnly: false)
        }
    }

    /// Each frame must continue the chain; a segment's first frame is the CRC record carrying it.
    private func checkChain(_ frame: RecordFrame.Decoded, isFirst: Bool, path: String) throws(WALError) {
        if let crc, frame.previousCRC != crc {
            throw .crcChainBreak(path: path, offset: frame.offset, expected: crc, found: frame.previousCRC)
        }
        if case .crc(let carried) = frame.record {
            guard isFirst else {
                throw .corruptRecord(path: path, offset: frame.offset, reason: "CRC record inside a segment")
            }
            guard carried == frame.previousCRC else {
                throw .crcChainBreak(path: path, offset: frame.offset, expected: frame.previousCRC, found: carried)
            }
        } else if isFirst {
            throw .corruptRecord(path: path, offset: frame.offset, reason: "segment does not start with a CRC record")
        }
    }

    private mutating func apply(_ frame: RecordFrame.Decoded, path: String) throws(WALError) {
        switch frame.record {
        case .crc:
            break
        case .metadata(let bytes):
            if let metadata, metadata != bytes { throw .metadataConflict(path: path, offset: frame.offset) }
            metadata = bytes
        case .hardState(let state):
            hardState = state
        case .snapshot(let marker):
            if marker.index == snapshot.index {
                guard marker.term == snapshot.term else {
                    throw .snapshotMismatch(
                        path: path,
                        offset: frame.offset,
                        index: marker.index,
                        expectedTerm: snapshot.term,
                        foundTerm: marker.term
                    )
                }
                matchedSnapshot = true
            }
            lastIndex = max(lastIndex, marker.index)
        case .entry(let entry):
            guard entry.index > snapshot.index else { return }
            // A later write of an index replaces it and everything after it: a new leader
            // overwrote this member's uncommitted tail.
            let position = entry.index - snapshot.index - 1
            guard position <= UInt64(entries.count) else {
                throw .entryGap(
                    path: path,
                    offset: frame.offset,
                    expectedIndex: snapshot.index + UInt64(entries.count) + 1,
                    foundIndex: entry.index
                )
            }
            entries.removeSubrange(Int(position)...)
            entries.append(entry)
            lastIndex = entry.index
        }
    }

    func finish(firstPath: String) throws(WALError) -> WALContents {
        guard let metadata else { throw .corruptRecord(path: firstPath, offset: 0, reason: "no metadata record") }
        guard matchedSnapshot else { throw .snapshotNotFound(index: snapshot.index, term: snapshot.term) }
        let lastEntryIndex = entries.last?.index ?? snapshot.index
        if hardState.commit > max(lastEntryIndex, lastIndex) {
            throw .commitBeyondLog(commit: hardState.commit, lastIndex: max(lastEntryIndex, lastIndex))
        }
        return WALContents(metadata: metadata, hardState: hardState, entries: entries, snapshot: snapshot)
    }
}

extension WAL {
    /// The snapshot markers in the log that a restart may start from: those at or below the
    /// last committed index (etcd's `ValidSnapshotEntries`). Reads without locking or repairing;
    /// a torn tail simply ends the scan. Pass the result to `Snapshotter.loadNewest(matching:)`.
    public static func snapshotMarkers(
        directory: String,
        fileSystem: any WALFileSystem = POSIXFileSystem()
    ) throws(WALError) -> [WALSnapshotMarker] {
        // Selecting from the highest index checks the sequence for gaps and returns the tail.
        let tail = try selectSegments(directory: directory, from: UInt64.max, fileSystem: fileSystem)
        let all = try fileSystem.fileNames(in: directory).compactMap(SegmentName.init(fileName:)).sorted()
        var markers: [WALSnapshotMarker] = []
        var hardState = HardState()
        var crc: UInt32?
        for name in all {
            let path = joinPath(directory, name.fileName)
            let scan = SegmentScan(try fileSystem.readWholeFile(path))
            for frame in scan.frames {
                if let crc, frame.previousCRC != crc {
                    throw .crcChainBreak(path: path, offset: frame.offset, expected: crc, found: frame.previousCRC)
                }
                crc = frame.crc
                switch frame.record {
                case .snapshot(let marker): markers.append(marker)
                case .hardState(let state): hardState = state
                default: break
                }
            }
            switch scan.end {
            case .clean: break
            case .torn(let offset, let reason):
                guard name == tail.last else { throw .corruptRecord(path: path, offset: offset, reason: reason) }
            case .corrupt(let offset, let reason): throw .corruptRecord(path: path, offset: offset, reason: reason)
            }
        }
        return markers.filter { $0.index <= hardState.commit }
    }
}
