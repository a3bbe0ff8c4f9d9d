/// A single-member change to the group's configuration, carried in an entry of type
/// `.confChange` and taking effect when the application applies it (`RaftNode.applyConfChange`).
///
/// Raft thesis §4.1: changing one member at a time keeps any two majorities of the old and new
/// configuration overlapping, so no joint phase is needed. The leader therefore refuses a second
/// change while one is still unapplied.
public struct ConfChange: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        /// Adds a voter, or promotes an existing learner to voter.
        case addNode = 0
        case removeNode = 1
        /// Adds a learner, or demotes an existing voter to learner.
        case addLearnerNode = 2
        /// Changes only what the application keeps about a member (etcd's member update of peer
        /// URLs); Raft's configuration stays as it is.
        case updateNode = 3
    }

    public var kind: Kind
    public var nodeID: NodeID
    /// Application bytes that travel with the change (etcd puts the member's peer URLs here).
    public var context: [UInt8]

    public init(kind: Kind, nodeID: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.nodeID = nodeID
        self.context = context
    }

    /// Layout: kind (1 byte), node ID (8 bytes, big-endian), then the context bytes.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(9 + context.count)
        bytes.append(kind.rawValue)
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: nodeID.rawValue >> UInt64(shift)))
        }
        bytes.append(contentsOf: context)
        return bytes
    }

    /// Decodes what `encoded()` wrote; nil for bytes that are not a change.
    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        var raw: UInt64 = 0
        for byte in bytes[1..<9] { raw = raw << 8 | UInt64(byte) }
        self.init(kind: kind, nodeID: NodeID(raw), context: Array(bytes[9...]))
    }
}
