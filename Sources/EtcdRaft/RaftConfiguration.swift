public import Logging

/// How one Raft node behaves. The defaults follow etcd's server (heartbeat 1 tick, election 10
/// ticks, PreVote and CheckQuorum on, 1 MiB appends, 256 inflight appends).
public struct RaftConfiguration {
    /// This node's identity; must not be `.none`.
    public var id: NodeID
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout is
    /// drawn from [electionTicks, 2 × electionTicks) each time (§5.2).
    public var electionTicks: Int = 10
    /// Ticks between leader heartbeats; must be below `electionTicks`.
    public var heartbeatTicks: Int = 1
    /// The last applied index when restarting, so committed entries are not handed out twice.
    public var applied: UInt64 = 0
    /// Upper bound on the entry bytes in one append message (at least one entry is always sent).
    public var maxSizePerMessageBytes: Int = 1024 * 1024
    /// Upper bound on the bytes of committed entries in one Ready.
    public var maxCommittedBytesPerReady: Int = 64 * 1024 * 1024
    /// Upper bound on the payload bytes the leader holds uncommitted; proposals beyond it are
    /// dropped. `Int.max` means no limit.
    public var maxUncommittedEntriesBytes: Int = Int.max
    /// Appends in flight to one follower in replicate state.
    public var maxInflightMessages: Int = 256
    /// A leader that has not heard from a quorum within an election timeout steps down, and a
    /// follower that hears from a live leader ignores vote requests (§6.2, §4.2.3).
    public var checkQuorum: Bool = true
    /// Campaign only after a pre-vote round shows a quorum would vote for us (§9.6), so a node
    /// that was partitioned away cannot force the term up when it returns.
    public var preVote: Bool = true
    public var readOnlyOption: ReadOnlyOption = .safe
    /// When true, a follower drops proposals instead of forwarding them to the leader.
    public var disableProposalForwarding: Bool = false
    /// Where the node logs role changes and unusual events; silent by default.
    public var logger: Logger = Logger(label: "etcd.raft", factory: { _ in SwiftLogNoOpLogHandler() })

    public init(id: NodeID) { self.id = id }

    func validate() {
        precondition(id != .none, "raft: cannot use none as id")
        precondition(heartbeatTicks > 0, "raft: heartbeat tick must be greater than 0")
        precondition(electionTicks > heartbeatTicks, "raft: election tick must be greater than heartbeat tick")
        precondition(maxInflightMessages > 0, "raft: max inflight messages must be greater than 0")
        precondition(
            readOnlyOption != .leaseBased || checkQuorum,
            "raft: checkQuorum must be enabled when the read-only option is lease based"
        )
    }
}

/// A small, fast, seedable generator (SplitMix64) for election timeouts, so that a seed replays a
/// whole cluster's behaviour exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
