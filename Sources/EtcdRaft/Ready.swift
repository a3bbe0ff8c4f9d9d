/// Everything a `RaftNode` needs the application to do, handed out by `RaftNode.ready()`.
///
/// The contract, in order:
/// 1. Persist `hardState` (if any), `entries` and `snapshot` (if any) to stable storage, with an
///    fsync when `mustSync` is true. A snapshot is installed before the entries that follow it.
/// 2. Send `messages` to their `to` members. (They may assume step 1 happened: a vote or an
///    append acknowledgement promises the data is durable.)
/// 3. Apply `snapshot` (if any) and then `committedEntries` to the state machine, in order. For
///    an entry of type `.confChange`, call `RaftNode.applyConfChange` with the decoded change.
/// 4. Serve the reads in `readStates` once their `index` is applied.
/// 5. Call `RaftNode.advance(_:)` with this Ready before asking for the next one.
public struct Ready: Sendable {
    /// Leader and role, when they changed since the last Ready.
    public var softState: SoftState?
    /// Term, vote and commit index, when they changed since the last Ready.
    public var hardState: HardState?
    /// Answers to `readIndex` requests.
    public var readStates: [ReadState]
    /// Entries to append to stable storage (replacing any conflicting suffix there).
    public var entries: [Entry]
    /// A snapshot received from the leader, to persist and apply.
    public var snapshot: Snapshot?
    /// Entries known to be committed and not yet applied.
    public var committedEntries: [Entry]
    /// Messages for other members.
    public var messages: [Message]
    /// Whether persisting this Ready needs an fsync: new entries, a new term or a new vote must
    /// survive a crash; a new commit index alone need not (it is recovered from the leader).
    public var mustSync: Bool

    /// True when there is nothing to do.
    public var isEmpty: Bool {
        softState == nil && hardState == nil && readStates.isEmpty && entries.isEmpty && snapshot == nil
            && committedEntries.isEmpty && messages.isEmpty
    }
}

/// A snapshot of a node's state for observers, tests and `etcdctl endpoint status`-style output.
public struct RaftStatus: Sendable, Hashable {
    public struct MemberProgress: Sendable, Hashable {
        public var id: NodeID
        public var match: UInt64
        public var next: UInt64
        public var state: ProgressState
        public var isLearner: Bool
        public var recentActive: Bool
        public var inflightCount: Int
    }

    public var id: NodeID
    public var hardState: HardState
    public var softState: SoftState
    public var applied: UInt64
    public var lastIndex: UInt64
    public var firstIndex: UInt64
    public var confState: ConfState
    public var leadTransferee: NodeID
    /// The leader's view of every member, sorted by ID; empty on non-leaders.
    public var progress: [MemberProgress]
}
