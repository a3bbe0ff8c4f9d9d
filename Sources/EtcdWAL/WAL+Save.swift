import CoreMetrics
public import EtcdRaft
import Logging

extension WAL {
    /// Appends `entries` and then `hardState` (etcd's order), in one write, and fdatasyncs when
    /// `sync` is true. Pass `sync: ready.mustSync`: a new term, vote or entry must be durable
    /// before the Ready's messages go out or its writes are acknowledged.
    ///
    /// Entries may overwrite a suffix of the log (a new leader replacing an uncommitted tail);
    /// replay keeps the later ones. They must be contiguous, start at most one past the last
    /// index, and never rewrite a committed index: Raft guarantees all three, so a violation
    /// traps.
    public func save(hardState newState: HardState?, entries: [Entry], sync: Bool) throws(WALError) {
        try checkUsable()
        if newState == nil && entries.isEmpty { return }
        checkContinuity(entries)
        if let newState {
            precondition(
                newState.term >= hardState.term && newState.commit >= hardState.commit,
                "wal: hard state (term \(newState.term), commit \(newState.commit)) goes back from "
                    + "(term \(hardState.term), commit \(hardState.commit))"
            )
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(entries.reduce(64) { $0 + $1.data.count + 48 })
        var chain = crc
        for entry in entries {
            chain = RecordFrame.append(.entry(entry), previousCRC: chain, to: &buffer)
        }
        if let newState {
            chain = RecordFrame.append(.hardState(newState), previousCRC: chain, to: &buffer)
        }
        try append(buffer, chain: chain, sync: sync)
        if let last = entries.last { lastIndex = last.index }
        if let newState { hardState = newState }
        try cutIfFull()
    }

    /// Records that a snapshot covering `marker` exists, and fsyncs (etcd's `SaveSnapshot`).
    /// Write the snapshot file first: a marker is a promise that replay can start there.
    public func saveSnapshot(_ marker: WALSnapshotMarker) throws(WALError) {
        try checkUsable()
        var buffer: [UInt8] = []
        let chain = RecordFrame.append(.snapshot(marker), previousCRC: crc, to: &buffer)
        try append(buffer, chain: chain, sync: true)
        // A snapshot from the leader may reach past our log; the next entry follows it.
        lastIndex = max(lastIndex, marker.index)
        try cutIfFull()
    }

    /// fdatasyncs the tail segment.
    public func sync() throws(WALError) {
        try checkUsable()
        let tail = segments[segments.count - 1]
        try poisoning { () throws(WALError) in try tail.file.sync(dataOnly: true) }
    }

    /// Syncs the tail and releases every segment (and its lock). The WAL cannot be used after.
    public func close() throws(WALError) {
        guard !isClosed else { return }
        defer {
            for segment in segments { segment.file.close() }
            isClosed = true
        }
        if failure == nil { try sync() }
    }

    private func checkContinuity(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(
            first.index <= lastIndex + 1,
            "wal: entry \(first.index) (term \(first.term)) would leave a gap after last index \(lastIndex)"
        )
        precondition(
            first.index > hardState.commit,
            "wal: entry \(first.index) (term \(first.term)) would overwrite committed index \(hardState.commit)"
        )
        for (previous, next) in zip(entries, entries.dropFirst()) {
            precondition(
                next.index == previous.index + 1 && next.term >= previous.term,
                "wal: entry \(next.index) (term \(next.term)) does not follow entry \(previous.index) "
                    + "(term \(previous.term))"
            )
        }
    }

    /// One pwrite of the frames of one save, then fdatasync if asked.
    private func append(_ buffer: [UInt8], chain: UInt32, sync: Bool) throws(WALError) {
        let tail = segments[segments.count - 1]
        let offset = tailOffset
        try poisoning { () throws(WALError) in
            try tail.file.write(buffer, at: offset)
            if sync {
                let started = ContinuousClock.now
                try tail.file.sync(dataOnly: true)
                if let timer = options.fsyncDurations { timer.recordNanoseconds(started.duration(to: .now).wholeNanoseconds) }
            }
        }
        tailOffset += buffer.count
        crc = chain
    }

    private func cutIfFull() throws(WALError) {
        if tailOffset >= options.segmentSizeBytes { try cut() }
    }

    /// Closes the full tail segment and starts the next one (etcd's `cut`): the old tail is
    /// truncated to its data and fsynced, so every segment but the last ends exactly at its last
    /// frame; the new one starts with the chain value, the metadata and the hard state.
    func cut() throws(WALError) {
        let tail = segments[segments.count - 1]
        let name = SegmentName(sequence: tail.name.sequence + 1, firstIndex: lastIndex + 1)
        var header: [UInt8] = []
        var chain = RecordFrame.append(.crc(crc), previousCRC: crc, to: &header)
        chain = RecordFrame.append(.metadata(metadata), previousCRC: chain, to: &header)
        if !hardState.isEmpty {
            chain = RecordFrame.append(.hardState(hardState), previousCRC: chain, to: &header)
        }
        let offset = tailOffset
        let file = try poisoning { () throws(WALError) -> any WALFile in
            try tail.file.truncate(to: offset)
            try tail.file.sync(dataOnly: false)
            return try Self.createSegmentFile(
                name,
                header: header,
                directory: directory,
                fileSystem: fileSystem,
                options: options
            )
        }
        segments.append(Segment(name: name, file: file))
        tailOffset = header.count
        crc = chain
        logger.debug("started WAL segment", metadata: ["segment": "\(name.fileName)"])
    }
}

extension Duration {
    /// The duration in whole nanoseconds (an fsync lasts far less than Int64's 292 years).
    fileprivate var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
