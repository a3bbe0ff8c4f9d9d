import EtcdRaft

/// Something in transit: a Raft message between members, or a transport report to a leader
/// about how a send went (snapshot status, unreachable). Reports travel through the same queue
/// so they are delivered as their own simulator steps, never inside another node's Ready cycle.
enum Parcel {
    case message(Message)
    case snapshotStatus(leader: NodeID, follower: NodeID, status: SnapshotStatus)
    case unreachable(leader: NodeID, follower: NodeID)

    /// The member that receives this parcel.
    var destination: NodeID {
        switch self {
        case .message(let message): message.to
        case .snapshotStatus(let leader, _, _), .unreachable(let leader, _): leader
        }
    }
}

/// A directed link between two members, for partitions.
struct Link: Hashable {
    var from: NodeID
    var to: NodeID
}

/// The simulated network: a bag of parcels, each with the tick at which it may be delivered.
///
/// Links are FIFO by default, like the TCP streams etcd's transport uses: a message never
/// overtakes an earlier one on its link. Reordering is a fault a message may draw: it then
/// ignores its link's order (and can be overtaken). Without FIFO links, Raft's optimistic
/// replication turns every overtaken append into a rejection and a resend of the window, which
/// is correct but floods the simulation. Loss and duplication are decided when a message is
/// sent; partitions block links at delivery time, so a partition also catches messages in flight.
struct SimNetwork {
    struct InFlight {
        var parcel: Parcel
        var deliverAt: UInt64
        /// The link whose order this parcel keeps, or nil for a reordered message or a report.
        var orderedLink: Link?
        var sequence: UInt64
    }

    /// Bound on parcels in flight (TigerBeetle: bound every queue). A correct leader sends a
    /// bounded number of messages per tick, so reaching it means the simulation is broken.
    static let capacity = 50_000

    private(set) var inFlight: [InFlight] = []
    /// Blocked directed links. Only ever queried with `contains`, so its hash order never
    /// reaches the run.
    private(set) var blocked: Set<Link> = []

    var isPartitioned: Bool { !blocked.isEmpty }

    /// The latest delivery time given to an ordered message per link, so later ones are not earlier.
    private var linkClock: [Link: UInt64] = [:]
    private var nextSequence: UInt64 = 0

    /// Queues a parcel for delivery at `deliverAt`, or later if `orderedLink` already has a
    /// message due after that.
    mutating func enqueue(_ parcel: Parcel, deliverAt: UInt64, orderedLink: Link? = nil) -> Bool {
        guard inFlight.count < Self.capacity else { return false }
        var time = deliverAt
        if let link = orderedLink {
            time = max(time, linkClock[link] ?? 0)
            linkClock[link] = time
        }
        nextSequence += 1
        inFlight.append(InFlight(parcel: parcel, deliverAt: time, orderedLink: orderedLink, sequence: nextSequence))
        return true
    }

    func dueCount(now: UInt64) -> Int {
        var count = 0
        for item in inFlight where item.deliverAt <= now { count += 1 }
        return count
    }

    /// Removes and returns the `ordinal`-th due parcel (in queue order), `ordinal < dueCount`,
    /// or, if it keeps its link's order, the oldest ordered parcel of that link (which is due
    /// too, since ordered delivery times never decrease along a link).
    mutating func takeDue(ordinal: Int, now: UInt64) -> Parcel {
        var seen = 0
        var chosen: Int?
        for position in inFlight.indices where inFlight[position].deliverAt <= now {
            if seen == ordinal {
                chosen = position
                break
            }
            seen += 1
        }
        guard var position = chosen else { preconditionFailure("sim: no due parcel number \(ordinal) at tick \(now)") }
        if let link = inFlight[position].orderedLink {
            for other in inFlight.indices
            where inFlight[other].orderedLink == link && inFlight[other].sequence < inFlight[position].sequence {
                position = other
            }
        }
        let parcel = inFlight[position].parcel
        // Order in the queue carries no meaning (the pick is random), so swap-remove.
        inFlight.swapAt(position, inFlight.count - 1)
        inFlight.removeLast()
        return parcel
    }

    /// The earliest delivery time of anything in flight.
    var nextDeliveryTime: UInt64? { inFlight.map(\.deliverAt).min() }

    func isBlocked(from: NodeID, to: NodeID) -> Bool {
        !blocked.isEmpty && blocked.contains(Link(from: from, to: to))
    }

    mutating func block(from: NodeID, to: NodeID) { blocked.insert(Link(from: from, to: to)) }

    mutating func healAll() { blocked.removeAll() }
}
