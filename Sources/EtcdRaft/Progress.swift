internal import DequeModule

/// How the leader is currently replicating to one follower.
public enum ProgressState: String, Sendable, Hashable {
    /// One append at a time until the follower's match index is found.
    case probe = "StateProbe"
    /// Streaming appends optimistically, up to the inflight window.
    case replicate = "StateReplicate"
    /// A snapshot is on its way; no appends until it is reported.
    case snapshot = "StateSnapshot"
}

/// The bounded window of appends sent to a follower and not yet acknowledged, remembered by the
/// last index each one carried.
struct Inflights {
    let capacity: Int
    private(set) var lastIndexes: Deque<UInt64> = []

    init(capacity: Int) {
        precondition(capacity > 0, "raft: inflight capacity must be positive")
        self.capacity = capacity
    }

    var isFull: Bool { lastIndexes.count >= capacity }
    var count: Int { lastIndexes.count }

    mutating func add(_ lastIndex: UInt64) {
        precondition(!isFull, "raft: cannot add into a full inflights window")
        lastIndexes.append(lastIndex)
    }

    /// Releases every append acknowledged by an answer that covers `index`.
    mutating func freeLE(_ index: UInt64) {
        while let first = lastIndexes.first, first <= index { lastIndexes.removeFirst() }
    }

    mutating func freeFirstOne() {
        if !lastIndexes.isEmpty { lastIndexes.removeFirst() }
    }

    mutating func reset() { lastIndexes.removeAll(keepingCapacity: true) }
}

/// The leader's view of one follower (Raft thesis §3.5 nextIndex/matchIndex, plus etcd-io/raft's
/// flow control states).
struct Progress {
    var match: UInt64
    var next: UInt64
    var state: ProgressState = .probe
    /// While in `.snapshot`: the index of the snapshot being sent.
    var pendingSnapshot: UInt64 = 0
    /// Heard from within the current election timeout (drives CheckQuorum).
    var recentActive = false
    /// In `.probe`: an append is out and we wait for its answer (or a heartbeat answer).
    var probeSent = false
    var inflights: Inflights
    var isLearner: Bool
    /// Lease-based reads: the leader tick at which the newest heartbeat this member answered was
    /// sent (0: none this term).
    var leaseAcknowledgedTick: UInt64 = 0

    init(match: UInt64 = 0, next: UInt64, maxInflight: Int, isLearner: Bool) {
        self.match = match
        self.next = next
        self.inflights = Inflights(capacity: maxInflight)
        self.isLearner = isLearner
    }

    private mutating func reset(to state: ProgressState) {
        probeSent = false
        pendingSnapshot = 0
        self.state = state
        inflights.reset()
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            // The follower may have installed the snapshot: probe just after it.
            let pending = pendingSnapshot
            reset(to: .probe)
            next = max(match + 1, pending + 1)
        } else {
            reset(to: .probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(to: .replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        reset(to: .snapshot)
        pendingSnapshot = index
    }

    /// Records an acknowledgement up to `index`; true if the match index moved.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Replicate state sends ahead without waiting for answers.
    mutating func optimisticUpdate(_ lastSent: UInt64) { next = lastSent + 1 }

    /// Handles a rejected append of the entries after `rejected`. `matchHint` is the highest index
    /// that may match. Returns false for a stale rejection that must be ignored.
    mutating func maybeDecrement(rejected: UInt64, matchHint: UInt64) -> Bool {
        if state == .replicate {
            // Appends are sent in order, so a rejection at or below match is out of date.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe state only the latest probe's answer counts.
        if next - 1 != rejected { return false }
        // Never probe below match + 1: everything up to match is known to agree.
        next = max(min(rejected, matchHint + 1), match + 1)
        probeSent = false
        return true
    }

    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }
}
