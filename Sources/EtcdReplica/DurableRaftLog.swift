public import EtcdRaft
public import EtcdWAL
public import Logging

/// One member's Raft log on disk, kept the way etcd's server keeps it: a WAL of entries and hard
/// states under `member/wal`, snapshot files with the Raft snapshot metadata under `member/snap`,
/// and the in-memory `MemoryStorage` that `RaftNode` reads.
///
/// The member's owner calls `persist(_:)` as step 1 of the Ready contract, and
/// `createSnapshot(at:confState:)` every `--snapshot-count` applied entries (once the backend
/// has committed the state it describes). Not thread-safe: it belongs to the member's one owner.
public final class DurableRaftLog {
    public struct Configuration: Sendable {
        public var walDirectory: String
        public var snapshotDirectory: String
        /// WAL segment files to keep beyond those still needed (etcd's `--max-wals`; 0 keeps all).
        public var maxWALs: Int = 5
        /// Snapshot files to keep (etcd's `--max-snapshots`; 0 keeps all).
        public var maxSnapshots: Int = 5
        /// Entries kept in memory behind a snapshot so that a slightly slow follower can still
        /// catch up from the log instead of needing the snapshot (etcd's
        /// `SnapshotCatchUpEntries`, 5000).
        public var catchUpEntries: UInt64 = 5000
        public var walOptions = WALOptions()
        /// Skip the fdatasync after appends (etcd's `--unsafe-no-fsync`): for tests only, since a
        /// machine crash can then lose acknowledged writes.
        public var unsafeNoFsync = false

        /// The layout etcd uses under a member directory (`<data-dir>/member`).
        public init(memberDirectory: String) {
            walDirectory = memberDirectory + "/wal"
            snapshotDirectory = memberDirectory + "/snap"
        }
    }

    /// What opening found on disk.
    public struct Restored: Sendable {
        /// True when no WAL existed: the log was just created and needs `bootstrap(voters:)`.
        public var isNew: Bool
        /// The bytes given to `open` when the log was created (member and cluster IDs).
        public var metadata: [UInt8]
        public var hardState: HardState
        /// The newest snapshot the WAL confirms, if any. A restarted `RaftNode` should use its
        /// index as `RaftConfiguration.applied`: Raft then hands out the entries after it again,
        /// and the applier skips those its backend already holds (the consistent index) but
        /// still applies their membership changes, which Raft's tracker has forgotten.
        public var snapshot: Snapshot?
        public var lastIndex: UInt64
    }

    /// What `RaftNode` reads.
    public let storage: MemoryStorage
    let wal: WAL
    let snapshotter: Snapshotter
    let configuration: Configuration
    let logger: Logger

    private init(storage: MemoryStorage, wal: WAL, snapshotter: Snapshotter, configuration: Configuration, logger: Logger) {
        self.storage = storage
        self.wal = wal
        self.snapshotter = snapshotter
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens the log, creating it with `metadata` when there is none. On restart it loads the
    /// newest snapshot that the WAL has a marker for (a snapshot file written just before a crash,
    /// without its marker, is ignored) and replays the WAL after it; a torn WAL tail is repaired,
    /// any other damage throws and names the file and offset.
    public static func open(
        _ configuration: Configuration,
        metadata: [UInt8],
        fileSystem: any WALFileSystem = POSIXFileSystem(),
        logger: Logger = Logger(label: "etcd.raftlog", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(WALError) -> (log: DurableRaftLog, restored: Restored) {
        let snapshotter = Snapshotter(directory: configuration.snapshotDirectory, fileSystem: fileSystem, logger: logger)
        let storage = MemoryStorage()
        guard WAL.exists(directory: configuration.walDirectory, fileSystem: fileSystem) else {
            let wal = try WAL.create(
                directory: configuration.walDirectory, metadata: metadata, fileSystem: fileSystem,
                options: configuration.walOptions, logger: logger
            )
            let log = DurableRaftLog(
                storage: storage, wal: wal, snapshotter: snapshotter, configuration: configuration, logger: logger)
            return (log, Restored(isNew: true, metadata: metadata, hardState: HardState(), snapshot: nil, lastIndex: 0))
        }
        let markers = try WAL.snapshotMarkers(directory: configuration.walDirectory, fileSystem: fileSystem)
        var snapshot: Snapshot?
        do {
            snapshot = try snapshotter.loadNewest(matching: markers)
        } catch .noSnapshot {
            snapshot = nil
        }
        let marker = snapshot.map { WALSnapshotMarker(index: $0.metadata.index, term: $0.metadata.term) } ?? .zero
        let (wal, contents) = try WAL.open(
            directory: configuration.walDirectory, at: marker, fileSystem: fileSystem,
            options: configuration.walOptions, logger: logger
        )
        if let snapshot {
            do {
                try storage.applySnapshot(snapshot)
            } catch {
                preconditionFailure("raftlog: a fresh storage refused snapshot \(snapshot.metadata.index): \(error)")
            }
        }
        storage.setHardState(contents.hardState)
        storage.append(contents.entries)
        logger.info(
            "opened raft log",
            metadata: [
                "snapshot_index": "\(marker.index)", "entries": "\(contents.entries.count)",
                "commit": "\(contents.hardState.commit)", "term": "\(contents.hardState.term)",
            ]
        )
        let log = DurableRaftLog(
            storage: storage, wal: wal, snapshotter: snapshotter, configuration: configuration, logger: logger)
        let restored = Restored(
            isNew: false, metadata: contents.metadata, hardState: contents.hardState, snapshot: snapshot,
            lastIndex: contents.entries.last?.index ?? marker.index
        )
        return (log, restored)
    }

    /// Starts a new group's log as etcd does: one committed entry per initial voter, adding it,
    /// at term 1, so that the membership is in the log from the start and survives restarts
    /// before any snapshot exists. Only on a new, empty log.
    public func bootstrap(voters: [NodeID], contexts: [NodeID: [UInt8]] = [:]) throws(WALError) {
        precondition(wal.lastIndex == 0 && wal.hardState.isEmpty, "raftlog: bootstrap on a log that has entries")
        precondition(!voters.isEmpty, "raftlog: bootstrap needs at least one voter")
        var entries: [Entry] = []
        for (position, voter) in voters.sorted().enumerated() {
            let change = ConfChange(kind: .addNode, nodeID: voter, context: contexts[voter] ?? [])
            entries.append(Entry(term: 1, index: UInt64(position) + 1, type: .confChange, data: change.encoded()))
        }
        let hardState = HardState(term: 1, vote: .none, commit: UInt64(entries.count))
        try wal.save(hardState: hardState, entries: entries, sync: true)
        storage.append(entries)
        storage.setHardState(hardState)
    }

    /// Step 1 of the Ready contract: makes the snapshot, entries and hard state durable (synced
    /// when `ready.mustSync`) and visible to Raft.
    public func persist(_ ready: Ready) throws(WALError) {
        if let snapshot = ready.snapshot {
            // The snapshot file goes first: a crash before the WAL marker leaves an unused file,
            // never a marker without its snapshot.
            try snapshotter.save(snapshot)
            try wal.saveSnapshot(WALSnapshotMarker(index: snapshot.metadata.index, term: snapshot.metadata.term))
            do {
                try storage.applySnapshot(snapshot)
            } catch {
                preconditionFailure("raftlog: storage refused snapshot \(snapshot.metadata.index) from Raft: \(error)")
            }
        }
        if ready.hardState != nil || !ready.entries.isEmpty {
            try wal.save(
                hardState: ready.hardState, entries: ready.entries,
                sync: ready.mustSync && !configuration.unsafeNoFsync
            )
        } else if ready.mustSync && !configuration.unsafeNoFsync {
            try wal.sync()
        }
        if let hardState = ready.hardState { storage.setHardState(hardState) }
        storage.append(ready.entries)
        if let snapshot = ready.snapshot {
            wal.releaseSegments(before: snapshot.metadata.index)
        }
    }

    /// Records that the state machine holds everything up to `appliedIndex` (the backend must
    /// have committed it), compacts the in-memory log behind it, and releases and purges old WAL
    /// segments and snapshot files. Returns the snapshot, or nil when one at or beyond
    /// `appliedIndex` already exists.
    @discardableResult
    public func createSnapshot(at appliedIndex: UInt64, confState: ConfState, data: [UInt8] = []) throws(WALError) -> Snapshot? {
        let snapshot: Snapshot
        do {
            snapshot = try storage.createSnapshot(at: appliedIndex, confState: confState, data: data)
        } catch .snapshotOutOfDate {
            return nil
        } catch {
            preconditionFailure("raftlog: cannot snapshot at applied index \(appliedIndex): \(error)")
        }
        try snapshotter.save(snapshot)
        try wal.saveSnapshot(WALSnapshotMarker(index: snapshot.metadata.index, term: snapshot.metadata.term))
        if appliedIndex > configuration.catchUpEntries {
            let compactIndex = appliedIndex - configuration.catchUpEntries
            if compactIndex >= ((try? storage.firstIndex()) ?? 0) {
                do {
                    try storage.compact(upTo: compactIndex)
                } catch {
                    preconditionFailure("raftlog: compacting to \(compactIndex) failed: \(error)")
                }
            }
        }
        wal.releaseSegments(before: snapshot.metadata.index)
        try wal.purgeSegments(maxWALs: configuration.maxWALs)
        try snapshotter.purge(maxSnapshots: configuration.maxSnapshots)
        logger.info(
            "snapshot created",
            metadata: ["index": "\(snapshot.metadata.index)", "term": "\(snapshot.metadata.term)"]
        )
        return snapshot
    }

    /// Closes the WAL (releasing its locks), e.g. before reopening in tests or at shutdown.
    public func close() throws(WALError) {
        try wal.close()
    }
}
