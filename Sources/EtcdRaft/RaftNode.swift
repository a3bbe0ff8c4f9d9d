/// One member of a Raft group, driven synchronously by its owner: the library's public API.
///
/// `RaftNode` does no I/O and reads no clock. Its owner calls `tick()` at a regular interval,
/// hands it every message received with `step(_:)`, submits work with `propose(_:)`,
/// `proposeConfChange(_:)` and `readIndex(context:)`, and then runs the `Ready` cycle: take
/// `ready()`, do what it says (see `Ready`), and call `advance(_:)`. Election timeouts come from
/// the generator passed in, so a seeded generator makes a whole run reproducible.
public struct RaftNode {
    var raft: Raft
    private var previousSoftState: SoftState
    private var previousHardState: HardState
    /// A Ready was handed out and not yet advanced.
    private var awaitingAdvance = false

    /// Creates a node over `storage`, restoring the hard state, membership and log it holds.
    /// A new group starts from a storage whose membership lists the initial voters
    /// (`MemoryStorage(confState:)`).
    public init(configuration: RaftConfiguration, storage: any RaftStorage, random: any RandomNumberGenerator) {
        raft = Raft(configuration: configuration, storage: storage, random: random)
        previousSoftState = raft.softState
        previousHardState = raft.hardState
    }

    public var id: NodeID { raft.id }

    /// Advances logical time by one tick: elections and heartbeats are counted in ticks.
    public mutating func tick() { raft.tick() }

    /// Starts an election now (with a pre-vote round first if configured), as if the election
    /// timeout had elapsed.
    public mutating func campaign() {
        raft.stepLocal(Message(type: .hup, from: raft.id))
    }

    /// Proposes `data` for the log. On a follower it is forwarded to the leader. Accepted does
    /// not mean committed: watch committed entries for it.
    public mutating func propose(_ data: [UInt8]) throws(RaftError) {
        try raft.step(Message(type: .propose, from: raft.id, entries: [Entry(term: 0, index: 0, data: data)]))
    }

    /// Proposes several entries at once; they are appended together, in order.
    public mutating func propose(batch: [[UInt8]]) throws(RaftError) {
        guard !batch.isEmpty else { return }
        let entries = batch.map { Entry(term: 0, index: 0, data: $0) }
        try raft.step(Message(type: .propose, from: raft.id, entries: entries))
    }

    /// Proposes a membership change. It takes effect when the application applies the entry.
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) {
        let entry = Entry(term: 0, index: 0, type: .confChange, data: change.encoded())
        try raft.step(Message(type: .propose, from: raft.id, entries: [entry]))
    }

    /// Applies a committed membership change and returns the new membership (to persist with
    /// the next snapshot).
    @discardableResult
    public mutating func applyConfChange(_ change: ConfChange) -> ConfState {
        raft.applyConfChange(change)
    }

    /// Feeds a message received from another member.
    public mutating func step(_ message: Message) throws(RaftError) {
        if message.type.isLocal { throw .stepLocalMessage }
        if message.type.isResponse && raft.tracker.progress[message.from] == nil {
            throw .stepPeerNotFound
        }
        try raft.step(message)
    }

    /// Asks for a linearizable read point. The answer arrives in `Ready.readStates` with the same
    /// `context`, which should be unique per outstanding request. Throws `.proposalDropped` on a
    /// follower that knows no leader (etcd-io/raft drops it silently); an accepted request can
    /// still go unanswered if leadership changes, so callers need a timeout and a retry.
    public mutating func readIndex(context: [UInt8]) throws(RaftError) {
        try raft.step(Message(type: .readIndex, from: .none, context: context))
    }

    /// Asks the leader to hand leadership to `transferee` (§3.10). Proposals are dropped while
    /// the transfer runs; it is abandoned after an election timeout.
    public mutating func transferLeadership(to transferee: NodeID) {
        do {
            try raft.step(Message(type: .transferLeader, from: transferee))
        } catch {
            // Transfer requests are never refused with an error, only ignored.
        }
    }

    /// Tells the leader that the last message to `memberID` could not be delivered.
    public mutating func reportUnreachable(_ memberID: NodeID) {
        raft.stepLocal(Message(type: .unreachable, from: memberID))
    }

    /// Tells the leader how sending a snapshot to `memberID` ended.
    public mutating func reportSnapshot(_ memberID: NodeID, status: SnapshotStatus) {
        raft.stepLocal(Message(type: .snapshotStatus, from: memberID, reject: status == .failed))
    }

    /// Whether `ready()` would return something to do.
    public mutating func hasReady() -> Bool {
        precondition(!awaitingAdvance, "raft: hasReady called before advancing the previous Ready")
        raft.flushReadIndexRound()
        if raft.softState != previousSoftState { return true }
        let hardState = raft.hardState
        if !hardState.isEmpty && hardState != previousHardState { return true }
        if raft.log.hasPendingSnapshot { return true }
        if !raft.messages.isEmpty || !raft.log.unstableEntries.isEmpty || !raft.readStates.isEmpty { return true }
        return raft.log.hasNextCommittedEntries
    }

    /// Collects what the application must do now. Call `advance(_:)` with it when done.
    public mutating func ready() -> Ready {
        precondition(!awaitingAdvance, "raft: ready called before advancing the previous Ready")
        raft.flushReadIndexRound()
        let softState = raft.softState
        let hardState = raft.hardState
        let entries = raft.log.unstableEntries
        let ready = Ready(
            softState: softState != previousSoftState ? softState : nil,
            hardState: hardState != previousHardState && !hardState.isEmpty ? hardState : nil,
            readStates: raft.readStates,
            entries: entries,
            snapshot: raft.log.unstable.snapshot,
            committedEntries: raft.log.nextCommittedEntries(),
            messages: raft.messages,
            mustSync: !entries.isEmpty || raft.log.unstable.snapshot != nil || hardState.term != previousHardState.term
                || hardState.vote != previousHardState.vote
        )
        previousSoftState = softState
        previousHardState = hardState
        raft.messages.removeAll(keepingCapacity: true)
        raft.readStates.removeAll()
        awaitingAdvance = true
        return ready
    }

    /// Acknowledges that `ready` was persisted, sent and applied.
    public mutating func advance(_ ready: Ready) {
        precondition(awaitingAdvance, "raft: advance called without an outstanding Ready")
        awaitingAdvance = false
        if let snapshot = ready.snapshot {
            raft.log.stableSnapshot(to: snapshot.metadata.index)
            raft.log.applied(to: snapshot.metadata.index)
        }
        if let last = ready.entries.last {
            raft.log.stable(to: last.index, term: last.term)
        }
        if let lastCommitted = ready.committedEntries.last {
            raft.log.applied(to: lastCommitted.index)
            var appliedBytes = 0
            for entry in ready.committedEntries { appliedBytes += entry.data.count }
            raft.uncommittedBytes = max(0, raft.uncommittedBytes - appliedBytes)
        }
    }

    public var status: RaftStatus {
        var progress: [RaftStatus.MemberProgress] = []
        if raft.role == .leader {
            for memberID in raft.tracker.memberIDs {
                guard let member = raft.tracker.progress[memberID] else { continue }
                progress.append(
                    RaftStatus.MemberProgress(
                        id: memberID, match: member.match, next: member.next, state: member.state,
                        isLearner: member.isLearner, recentActive: member.recentActive,
                        inflightCount: member.inflights.count
                    )
                )
            }
        }
        return RaftStatus(
            id: raft.id, hardState: raft.hardState, softState: raft.softState, applied: raft.log.applied,
            lastIndex: raft.log.lastIndex, firstIndex: raft.log.firstIndex, confState: raft.tracker.confState,
            leadTransferee: raft.leadTransferee, progress: progress
        )
    }

    /// Every entry Raft can currently see, stable and unstable (for tests and debugging).
    public var allEntries: [Entry] { raft.log.allEntries() }

    /// The commit index, which may be ahead of what the last Ready reported.
    public var committedIndex: UInt64 { raft.log.committed }

    /// Term, vote and commit now (cheaper than `status` for callers that want only these).
    public var hardState: HardState { raft.hardState }

    /// Role and known leader now.
    public var softState: SoftState { raft.softState }

    /// Whether this node is the group's only voter (it then answers ReadIndex without messages).
    /// Whether this member is a learner in the configuration it has applied.
    public var isLearner: Bool { raft.isLearner }

    public var isSoleVoter: Bool { raft.tracker.isSingleton && raft.tracker.voters.first == raft.id }
}
