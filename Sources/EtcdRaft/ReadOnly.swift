/// How a leader answers ReadIndex requests.
public enum ReadOnlyOption: Sendable, Hashable {
    /// Confirm leadership with a round of heartbeats before answering (Raft thesis §6.4).
    case safe
    /// Answer at once while the leader holds a lease (§6.4.1): a quorum answered heartbeats sent
    /// less than an election timeout (minus two ticks) ago, and each of them refuses votes for an
    /// election timeout after hearing from the leader. Without a lease, fall back to `.safe`.
    /// Relies on members' ticks running at the same rate; requires `checkQuorum`.
    case leaseBased
}

/// Safe-mode ReadIndex requests waiting for a quorum of heartbeat acknowledgements.
///
/// Requests are answered in arrival order; an acknowledgement for a later request also confirms
/// every earlier one, because the heartbeat round for it started after theirs arrived.
struct ReadOnlyQueue {
    struct Pending {
        var request: Message
        var index: UInt64
        var acknowledged: Set<NodeID>
    }

    private(set) var pending: [[UInt8]: Pending] = [:]
    /// Contexts in arrival order.
    private(set) var order: [[UInt8]] = []

    /// Remembers a read that arrived when the commit index was `index`.
    mutating func add(index: UInt64, request: Message) {
        let context = request.context
        if pending[context] != nil { return }
        pending[context] = Pending(request: request, index: index, acknowledged: [])
        order.append(context)
    }

    /// Records that `id` acknowledged the heartbeat round for `context`; returns who has so far.
    mutating func acknowledge(from id: NodeID, context: [UInt8]) -> Set<NodeID>? {
        guard pending[context] != nil else { return nil }
        pending[context]?.acknowledged.insert(id)
        return pending[context]?.acknowledged
    }

    /// Removes and returns every request up to and including the one for `context`.
    mutating func advance(through context: [UInt8]) -> [Pending] {
        guard let position = order.firstIndex(of: context) else { return [] }
        let released = order[...position].compactMap { pending.removeValue(forKey: $0) }
        order.removeFirst(position + 1)
        return released
    }

    var lastPendingContext: [UInt8]? { order.last }
    var count: Int { order.count }
}
