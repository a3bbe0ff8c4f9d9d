import EtcdRaft

/// One thing that happened in a run. Stored as values and only rendered to text when a run
/// fails (or when replaying one seed), because formatting every step would dominate the cost.
enum TraceEvent {
    case tick(time: UInt64)
    case deliver(Message)
    case drop(Message, reason: StaticString)
    case duplicate(Message)
    case report(leader: NodeID, follower: NodeID, what: StaticString)
    case propose(node: NodeID, writeID: UInt64, key: Int, accepted: Bool)
    case read(node: NodeID, readID: UInt64, key: Int, accepted: Bool)
    case readServed(node: NodeID, readID: UInt64, index: UInt64, write: UInt64, writeIndex: UInt64)
    case writeAcknowledged(node: NodeID, writeID: UInt64, index: UInt64)
    case becameLeader(node: NodeID, term: UInt64)
    case roleChange(node: NodeID, role: RaftRole, leader: NodeID, term: UInt64)
    case crash(node: NodeID, when: StaticString, lostUnsynced: Bool)
    case restart(node: NodeID, term: UInt64, commit: UInt64, snapshotIndex: UInt64, lastIndex: UInt64)
    case spawn(node: NodeID)
    case retire(node: NodeID)
    case partition(description: String)
    case heal
    case proposeConfChange(leader: NodeID, change: ConfChange, accepted: Bool)
    case appliedConfChange(node: NodeID, change: ConfChange, index: UInt64)
    case transfer(leader: NodeID, to: NodeID)
    case snapshotTaken(node: NodeID, index: UInt64, compactedTo: UInt64)
    case snapshotInstalled(node: NodeID, index: UInt64)
    case phase(String)
}

extension TraceEvent: CustomStringConvertible {
    var description: String {
        switch self {
        case .tick(let time): "tick -> \(time)"
        case .deliver(let message): "deliver \(Self.render(message))"
        case .drop(let message, let reason): "drop (\(reason)) \(Self.render(message))"
        case .duplicate(let message): "duplicate \(Self.render(message))"
        case .report(let leader, let follower, let what): "report to \(leader): \(what) for \(follower)"
        case .propose(let node, let id, let key, let accepted):
            "propose write \(id) key \(key) at \(node)\(accepted ? "" : " (dropped)")"
        case .read(let node, let id, let key, let accepted):
            "read \(id) key \(key) at \(node)\(accepted ? "" : " (dropped)")"
        case .readServed(let node, let id, let index, let write, let writeIndex):
            "read \(id) served by \(node) at read index \(index): write \(write) from index \(writeIndex)"
        case .writeAcknowledged(let node, let id, let index): "write \(id) acknowledged by \(node) (index \(index))"
        case .becameLeader(let node, let term): "\(node) became leader of term \(term)"
        case .roleChange(let node, let role, let leader, let term):
            "\(node) is \(role.rawValue) in term \(term), leader \(leader)"
        case .crash(let node, let when, let lost):
            "crash \(node) \(when)\(lost ? ", losing its unsynced hard state" : "")"
        case .restart(let node, let term, let commit, let snapshot, let last):
            "restart \(node): term \(term) commit \(commit) snapshot \(snapshot) last index \(last)"
        case .spawn(let node): "start new member \(node)"
        case .retire(let node): "retire removed member \(node)"
        case .partition(let description): "partition \(description)"
        case .heal: "heal all partitions"
        case .proposeConfChange(let leader, let change, let accepted):
            "propose \(change.kind) \(change.nodeID) at \(leader)\(accepted ? "" : " (dropped)")"
        case .appliedConfChange(let node, let change, let index):
            "\(node) applied \(change.kind) \(change.nodeID) at \(index)"
        case .transfer(let leader, let to): "transfer leadership \(leader) -> \(to)"
        case .snapshotTaken(let node, let index, let compacted):
            "\(node) took snapshot at \(index), compacted to \(compacted)"
        case .snapshotInstalled(let node, let index): "\(node) installed snapshot \(index)"
        case .phase(let text): "== \(text)"
        }
    }

    static func render(_ message: Message) -> String {
        var text = "\(message.type) \(message.from)->\(message.to) term \(message.term)"
        switch message.type {
        case .append:
            text += " index \(message.index) logTerm \(message.logTerm) commit \(message.commit)"
            if let first = message.entries.first, let last = message.entries.last {
                text += " entries [\(first.index)-\(last.index)]"
            }
        case .appendResponse:
            text += " index \(message.index)"
            if message.reject { text += " reject hint \(message.rejectHint) hintTerm \(message.logTerm)" }
        case .vote, .preVote:
            text += " lastIndex \(message.index) lastTerm \(message.logTerm)"
        case .voteResponse, .preVoteResponse:
            text += message.reject ? " rejected" : " granted"
        case .heartbeat:
            text += " commit \(message.commit)"
        case .snapshot:
            if let snapshot = message.snapshot {
                text += " snapshot \(snapshot.metadata.index) term \(snapshot.metadata.term)"
            }
        case .readIndexResponse:
            text += " index \(message.index)"
        default:
            break
        }
        if !message.context.isEmpty && message.type != .vote && message.type != .preVote {
            text += " ctx \(message.context.count)B"
        }
        return text
    }
}

/// The last events of a run, in a ring buffer, for the failure report.
struct TraceBuffer {
    let capacity: Int
    private var events: [(step: UInt64, event: TraceEvent)] = []
    private var next = 0

    init(capacity: Int) {
        self.capacity = capacity
        events.reserveCapacity(capacity)
    }

    mutating func append(step: UInt64, _ event: TraceEvent) {
        if events.count < capacity {
            events.append((step, event))
        } else {
            events[next] = (step, event)
            next = (next + 1) % capacity
        }
    }

    /// Oldest first.
    var lines: [String] {
        let ordered = events.count < capacity ? events : Array(events[next...] + events[..<next])
        return ordered.map { "  [\($0.step)] \($0.event)" }
    }
}
