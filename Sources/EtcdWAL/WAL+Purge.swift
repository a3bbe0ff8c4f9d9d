import Logging

extension WAL {
    /// Unlocks and closes the segments that hold only entries before `index` (etcd's
    /// `ReleaseLockTo`): call it with the index of a snapshot just saved. The segment containing
    /// `index` and the tail stay held. Released files remain on disk until `purgeSegments`.
    public func releaseSegments(before index: UInt64) {
        precondition(!isClosed, "wal: releaseSegments(before: \(index)) after close")
        // The segment holding `index` is the last one that starts at or before it.
        let containing =
            (segments.firstIndex { $0.name.firstIndex >= index }).map { $0 - 1 } ?? segments.count - 1
        guard containing > 0 else { return }
        for segment in segments[..<containing] { segment.file.close() }
        logger.debug(
            "released WAL segments",
            metadata: ["before_index": "\(index)", "released": "\(containing)"]
        )
        segments.removeFirst(containing)
    }

    /// Removes the oldest released segment files while more than `maxWALs` remain, stopping at
    /// the first one still held (etcd's `PurgeFile` for `--max-wals`; 0 keeps everything).
    /// Returns the names removed.
    @discardableResult
    public func purgeSegments(maxWALs: Int = 5) throws(WALError) -> [String] {
        try checkUsable()
        guard maxWALs > 0 else { return [] }
        let held = Set(segments.map(\.name))
        var names = try fileSystem.fileNames(in: directory).compactMap(SegmentName.init(fileName:)).sorted()
        var removed: [String] = []
        while names.count > maxWALs, let oldest = names.first, !held.contains(oldest) {
            try fileSystem.removeFile(joinPath(directory, oldest.fileName))
            removed.append(oldest.fileName)
            names.removeFirst()
        }
        guard !removed.isEmpty else { return [] }
        try fileSystem.syncDirectory(directory)
        logger.info("purged WAL segments", metadata: ["wal_dir": "\(directory)", "removed": "\(removed)"])
        return removed
    }
}
