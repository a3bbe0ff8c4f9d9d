/// The identity of one member of a Raft group. Zero means "nobody" (no leader, no vote).
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The absent member: no leader known, no vote cast.
    public static let none = NodeID(0)

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue, radix: 16) }
}

/// What an entry carries: an application command or a membership change.
public enum EntryType: UInt8, Sendable, Hashable {
    case normal = 0
    case confChange = 1
}

/// One slot of the replicated log.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var type: EntryType
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, type: EntryType = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.type = type
        self.data = data
    }

    /// Bytes this entry counts for in message and Ready size limits: its payload plus a fixed
    /// allowance for the header fields, so that a stream of empty entries is still bounded.
    public var sizeBytes: Int { data.count + 24 }
}

/// The state Raft must find on disk after a restart (Raft thesis §3.8, figure 3.1 "persistent state").
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = .none, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public var isEmpty: Bool { self == HardState() }
}

/// The membership of the group as of some log index.
public struct ConfState: Sendable, Hashable {
    /// Members that vote and count towards quorum, sorted.
    public var voters: [NodeID]
    /// Members that receive the log but never vote or count towards quorum, sorted.
    public var learners: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = []) {
        self.voters = voters.sorted()
        self.learners = learners.sorted()
    }
}

public struct SnapshotMetadata: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// The application state as of `metadata.index`, replacing every log entry up to it.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// The kinds of message Raft exchanges, named after etcd-io/raft's raftpb.MessageType.
///
/// `hup`, `beat`, `unreachable`, `snapshotStatus` and `checkQuorum` are local: a node steps them
/// into itself and they never cross the network.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    case hup = 0
    case beat = 1
    case propose = 2
    case append = 3
    case appendResponse = 4
    case vote = 5
    case voteResponse = 6
    case snapshot = 7
    case heartbeat = 8
    case heartbeatResponse = 9
    case unreachable = 10
    case snapshotStatus = 11
    case checkQuorum = 12
    case transferLeader = 13
    case timeoutNow = 14
    case readIndex = 15
    case readIndexResponse = 16
    case preVote = 17
    case preVoteResponse = 18

    /// Messages that a node generates for itself; `RaftNode.step` refuses them from outside.
    public var isLocal: Bool {
        switch self {
        case .hup, .beat, .unreachable, .snapshotStatus, .checkQuorum: true
        default: false
        }
    }

    /// Replies to something this node sent; one from a member we do not track is dropped.
    public var isResponse: Bool {
        switch self {
        case .appendResponse, .voteResponse, .heartbeatResponse, .unreachable, .preVoteResponse: true
        default: false
        }
    }
}

/// One Raft message. Which fields matter depends on `type`, as in etcd-io/raft.
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var to: NodeID
    public var from: NodeID
    public var term: UInt64
    /// For appends: the term of the entry at `index`. For vote requests: the candidate's last term.
    /// For rejected appends: the term of the follower's entry at `rejectHint`.
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var snapshot: Snapshot?
    public var reject: Bool
    public var rejectHint: UInt64
    /// Opaque bytes: the request context of a ReadIndex round, or the campaign kind of a vote.
    public var context: [UInt8]

    public init(
        type: MessageType,
        to: NodeID = .none,
        from: NodeID = .none,
        term: UInt64 = 0,
        logTerm: UInt64 = 0,
        index: UInt64 = 0,
        entries: [Entry] = [],
        commit: UInt64 = 0,
        snapshot: Snapshot? = nil,
        reject: Bool = false,
        rejectHint: UInt64 = 0,
        context: [UInt8] = []
    ) {
        self.type = type
        self.to = to
        self.from = from
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
    }
}

/// The role a node currently plays.
public enum RaftRole: String, Sendable, Hashable {
    case follower = "StateFollower"
    case candidate = "StateCandidate"
    case leader = "StateLeader"
    case preCandidate = "StatePreCandidate"
}

/// Volatile state the application may want to observe; not persisted.
public struct SoftState: Sendable, Hashable {
    public var leader: NodeID
    public var role: RaftRole

    public init(leader: NodeID, role: RaftRole) {
        self.leader = leader
        self.role = role
    }
}

/// The answer to a `readIndex` request: once the application has applied `index`, a read that
/// carried `requestContext` may be served linearizably.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var requestContext: [UInt8]

    public init(index: UInt64, requestContext: [UInt8]) {
        self.index = index
        self.requestContext = requestContext
    }
}

/// Whether a snapshot reached a follower, reported by the transport with `reportSnapshot`.
public enum SnapshotStatus: Sendable, Hashable {
    case finished
    case failed
}
