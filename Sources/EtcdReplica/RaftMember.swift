public import EtcdRaft
public import EtcdWAL
public import Logging

/// Why a member cannot go on. Every case stops the member: its log or its backend can no longer
/// be trusted to hold what was acknowledged, and a restart recovers from the WAL.
public enum MemberError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The WAL or snapshot files failed (I/O error, corruption at open).
    case wal(WALError)
    /// The backend failed while applying or committing.
    case backend(String)
    /// The WAL and the backend disagree in a way no crash can explain (e.g. the backend has
    /// applied entries the WAL never held).
    case inconsistent(String)
    /// The newest Raft snapshot is ahead of the backend: the member stopped between saving a
    /// snapshot from the leader and installing its backend image, which must be installed now.
    case backendBehindSnapshot(snapshotIndex: UInt64, snapshotTerm: UInt64, appliedIndex: UInt64)

    public var description: String {
        switch self {
        case .backendBehindSnapshot(let index, _, let applied):
            return "data directory is inconsistent: the newest snapshot is at index \(index) but the backend has "
                + "applied only \(applied); the entries in between are gone"
        case .wal(let error): return "write-ahead log: \(error)"
        case .backend(let reason): return "backend: \(reason)"
        case .inconsistent(let reason): return "data directory is inconsistent: \(reason)"
        }
    }
}

/// One member's Raft: the node, its durable log and the snapshot policy, i.e. the whole Ready
/// contract except the state machine, which the owner applies through a closure so that it can
/// hold the state machine's lock only while applying (not while the WAL syncs).
///
/// Not thread-safe; it has exactly one owner (the server's Raft loop, or a test).
public final class RaftMember {
    public struct Options: Sendable {
        public var id: NodeID
        public var log: DurableRaftLog.Configuration
        /// Ticks without a leader before an election (etcd: election timeout / heartbeat interval).
        public var electionTicks = 10
        public var heartbeatTicks = 1
        public var preVote = true
        /// Applied entries between snapshots (etcd's `--snapshot-count`).
        public var snapshotCount: UInt64 = 100_000
        /// Seeds the election timeout jitter.
        public var seed: UInt64 = 0
        /// The context of each initial voter's membership entry in a new log (etcd writes the
        /// member's description there, for the membership to apply).
        public var bootstrapContexts: [NodeID: [UInt8]] = [:]
        /// The voters a new log starts with (etcd's `--initial-cluster` with state `new`); empty
        /// means this member alone.
        public var initialVoters: [NodeID] = []
        /// A new log starts empty instead (`--initial-cluster-state existing`): the leader sends
        /// it the cluster's log from the start, or a snapshot.
        public var joinsExistingCluster = false

        public init(id: NodeID, log: DurableRaftLog.Configuration) {
            self.id = id
            self.log = log
        }
    }

    /// What one Ready cycle produced for the owner.
    public struct Cycle: Sendable {
        /// Answers to `readIndex(context:)`: the index a read must wait for.
        public var readStates: [ReadState]
        /// Set when the role or leader changed.
        public var softState: SoftState?
        /// The last entry applied in this cycle, if any.
        public var lastAppliedIndex: UInt64?
    }

    public private(set) var node: RaftNode
    let log: DurableRaftLog
    let options: Options
    let logger: Logger
    /// The index of the newest snapshot.
    public private(set) var snapshotIndex: UInt64

    private init(node: RaftNode, log: DurableRaftLog, options: Options, snapshotIndex: UInt64, logger: Logger) {
        self.node = node
        self.log = log
        self.options = options
        self.snapshotIndex = snapshotIndex
        self.logger = logger
    }

    /// Opens (or creates) the member's log and starts its Raft node. `appliedIndex` is the
    /// backend's consistent index: entries after the newest snapshot are handed out again, and
    /// the state machine skips those at or below it. A new log is bootstrapped with this member
    /// as the only voter, as a single-member etcd starts.
    public static func open(
        _ options: Options,
        metadata: [UInt8],
        appliedIndex: UInt64,
        fileSystem: any WALFileSystem = POSIXFileSystem(),
        logger: Logger
    ) throws(MemberError) -> RaftMember {
        let log: DurableRaftLog
        let restored: DurableRaftLog.Restored
        do {
            (log, restored) = try DurableRaftLog.open(options.log, metadata: metadata, fileSystem: fileSystem, logger: logger)
        } catch {
            throw .wal(error)
        }
        let snapshotIndex = restored.snapshot?.metadata.index ?? 0
        do throws(MemberError) {
            if restored.isNew {
                guard appliedIndex == 0 else {
                    throw .inconsistent(
                        "the backend has applied entries up to \(appliedIndex) but \(options.log.walDirectory) holds no "
                            + "write-ahead log (a data directory from before the WAL existed, or a deleted WAL)")
                }
                if !options.joinsExistingCluster {
                    do {
                        let voters = options.initialVoters.isEmpty ? [options.id] : options.initialVoters
                        try log.bootstrap(voters: voters, contexts: options.bootstrapContexts)
                    } catch {
                        throw .wal(error)
                    }
                }
            } else {
                guard restored.metadata == metadata else {
                    throw .inconsistent("the WAL belongs to another member or cluster than the backend")
                }
                guard appliedIndex >= snapshotIndex else {
                    throw .backendBehindSnapshot(
                        snapshotIndex: snapshotIndex, snapshotTerm: restored.snapshot?.metadata.term ?? 0,
                        appliedIndex: appliedIndex)
                }
                guard appliedIndex <= restored.lastIndex else {
                    throw .inconsistent(
                        "the backend has applied entries up to \(appliedIndex) but the WAL ends at "
                            + "\(restored.lastIndex) (was the member run with --unsafe-no-fsync and the machine crashed?)")
                }
            }
        } catch {
            try? log.close()
            throw error
        }
        var configuration = RaftConfiguration(id: options.id)
        configuration.electionTicks = options.electionTicks
        configuration.heartbeatTicks = options.heartbeatTicks
        configuration.preVote = options.preVote
        configuration.applied = snapshotIndex
        configuration.logger = logger
        let node = RaftNode(configuration: configuration, storage: log.storage, random: SplitMix64(seed: options.seed))
        return RaftMember(node: node, log: log, options: options, snapshotIndex: snapshotIndex, logger: logger)
    }

    // MARK: Input

    public func tick() { node.tick() }

    /// Starts an election at once when this member is the only voter: a lone member need not
    /// wait an election timeout to lead its own cluster.
    public func campaignIfAlone() {
        if !isLeader && node.status.confState.voters == [options.id] {
            node.campaign()
        }
    }

    public func propose(_ batch: [[UInt8]]) throws(RaftError) {
        try node.propose(batch: batch)
    }

    public func readIndex(context: [UInt8]) throws(RaftError) {
        try node.readIndex(context: context)
    }

    /// Feeds a message from a peer. Peer input is untrusted: whatever Raft refuses is dropped.
    public func step(_ message: Message) {
        do {
            try node.step(message)
        } catch {
            logger.trace("peer message dropped", metadata: ["type": "\(message.type)", "from": "\(message.from)", "error": "\(error)"])
        }
    }

    public func reportUnreachable(_ peer: NodeID) { node.reportUnreachable(peer) }

    public func reportSnapshot(_ peer: NodeID, status: SnapshotStatus) { node.reportSnapshot(peer, status: status) }

    public func proposeConfChange(_ change: ConfChange) throws(RaftError) {
        try node.proposeConfChange(change)
    }

    public func transferLeadership(to transferee: NodeID) { node.transferLeadership(to: transferee) }

    /// A read index without a Ready cycle through the owner's loop, when Raft can answer from
    /// memory: this member is the only voter, leads, and has nothing else pending, so the Ready
    /// that the request makes holds only its read state (nothing to persist, send or apply).
    /// Nil when that is not the case; if Raft accepted the request but could not answer yet (no
    /// commit in this term so far), its read state comes out of a later cycle and can be ignored.
    public func immediateReadIndex(context: [UInt8]) -> UInt64? {
        guard isLeader, node.isSoleVoter, !node.hasReady() else { return nil }
        do {
            try node.readIndex(context: context)
        } catch {
            return nil
        }
        guard node.hasReady() else { return nil }
        let ready = node.ready()
        precondition(
            ready.entries.isEmpty && ready.committedEntries.isEmpty && ready.messages.isEmpty && ready.snapshot == nil
                && ready.hardState == nil && ready.softState == nil,
            "raft member: a lone leader's ReadIndex produced more than a read state"
        )
        node.advance(ready)
        return ready.readStates.first { $0.requestContext == context }?.index
    }

    // MARK: The Ready cycle

    /// Runs one Ready cycle if Raft has work: persists entries and hard state to the WAL (synced
    /// when Raft requires), hands committed entries to `apply`, applies membership changes,
    /// and advances. Returns nil when there was nothing to do. `apply` must apply every entry
    /// it is given before returning (its results are the owner's business), and returns the
    /// indexes of the membership entries the state machine refused, which Raft's configuration
    /// then skips.
    public func runCycle(
        send: ([Message]) -> Void = { _ in },
        restore: (Snapshot) throws(MemberError) -> Void = { snapshot throws(MemberError) in
            throw .inconsistent("received a Raft snapshot at index \(snapshot.metadata.index) with no way to restore it")
        },
        apply: ([Entry]) throws(ReplicaError) -> Set<UInt64>
    ) throws(MemberError) -> Cycle? {
        guard node.hasReady() else { return nil }
        let ready = node.ready()
        // A leader's messages (appends, heartbeats) may go out before its own entries are on
        // disk: it counts itself in a commit only once they are (etcd-io/raft's "leader can write
        // to its disk in parallel"). Anyone else's messages (votes, append responses) promise
        // what they persisted, so they wait for the sync.
        let sendsFirst = node.softState.role == .leader
        if sendsFirst { send(ready.messages) }
        do {
            try log.persist(ready)
        } catch {
            throw .wal(error)
        }
        // A snapshot from the leader: the log now starts after it (saved above, so a crash from
        // here on finds it and restores the state machine at the restart); the state machine
        // is replaced before any entry after it is applied.
        if let snapshot = ready.snapshot {
            try restore(snapshot)
            snapshotIndex = snapshot.metadata.index
        }
        if !sendsFirst { send(ready.messages) }
        if !ready.committedEntries.isEmpty {
            let refused: Set<UInt64>
            do {
                refused = try apply(ready.committedEntries)
            } catch {
                throw .backend("\(error)")
            }
            for entry in ready.committedEntries where entry.type == .confChange && !refused.contains(entry.index) {
                guard let change = ConfChange(encoded: entry.data) else {
                    preconditionFailure("raft member: committed membership change \(entry.index) does not decode")
                }
                node.applyConfChange(change)
            }
        }
        node.advance(ready)
        return Cycle(
            readStates: ready.readStates,
            softState: ready.softState,
            lastAppliedIndex: ready.committedEntries.last?.index
        )
    }

    /// Whether enough entries were applied since the last snapshot to take another.
    public func snapshotDue(appliedIndex: UInt64) -> Bool {
        appliedIndex > snapshotIndex && appliedIndex - snapshotIndex > options.snapshotCount
    }

    /// Records a snapshot at `appliedIndex` and compacts the log behind it (keeping catch-up
    /// entries), releasing old WAL segments and snapshot files. The backend must hold everything
    /// up to `appliedIndex` durably before this is called: the entries it releases are gone.
    public func createSnapshot(at appliedIndex: UInt64) throws(MemberError) {
        do {
            if let snapshot = try log.createSnapshot(at: appliedIndex, confState: node.status.confState) {
                snapshotIndex = snapshot.metadata.index
            }
        } catch {
            throw .wal(error)
        }
    }

    /// Closes the WAL. The member must not be used afterwards.
    public func close() throws(MemberError) {
        do {
            try log.close()
        } catch {
            throw .wal(error)
        }
    }

    // MARK: State

    public var id: NodeID { options.id }
    public var term: UInt64 { node.hardState.term }
    public var leader: NodeID { node.softState.leader }
    public var isLeader: Bool { node.softState.role == .leader }
    public var committedIndex: UInt64 { node.committedIndex }
    /// Whether this member is the only voter (a cluster of one).
    public var isSoleVoter: Bool { node.isSoleVoter }
    public var isLearner: Bool { node.isLearner }
    /// On the leader, each member's match index (its own included); empty elsewhere.
    public var matchIndexes: [UInt64: UInt64] {
        var match: [UInt64: UInt64] = [:]
        for progress in node.status.progress { match[progress.id.rawValue] = progress.match }
        return match
    }
}
