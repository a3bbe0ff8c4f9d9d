import EtcdRaft

/// The first bytes on every peer connection, from the member that opened it: who it is, whom it
/// means to reach and in which cluster. etcd's rafthttp says the same in HTTP headers
/// (`X-Server-From`, `X-Raft-To`, `X-Etcd-Cluster-ID`) and refuses a stream whose values do not
/// match; here a mismatch closes the connection.
///
/// Layout (29 bytes, little-endian): magic u32, version u8, from u64, to u64, cluster ID u64.
/// The magic also says what the connection carries: a stream of message frames, or one snapshot
/// (etcd's rafthttp posts snapshots to a path of their own, `/raft/snapshot`).
struct PeerHandshake: Hashable, Sendable {
    /// What a connection carries after its handshake.
    enum Kind: Hashable, Sendable {
        /// Frames of Raft messages (see `PeerMessageCodec`), for as long as the connection lasts.
        case messages
        /// One MsgSnap and the backend image behind it (see `PeerSnapshotStream`).
        case snapshot
    }

    /// "SEPT" (swift-etcd peer transport): tells a stray client (an HTTP probe, a client
    /// pointed at the wrong port) from a member before any frame is read.
    static let magic: UInt32 = 0x5450_4553
    /// "SEPS": the same for a snapshot connection.
    static let snapshotMagic: UInt32 = 0x5350_4553
    static let version: UInt8 = 1
    static let byteCount = 4 + 1 + 8 + 8 + 8

    var from: NodeID
    var to: NodeID
    var clusterID: UInt64
    var kind: Kind = .messages

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        let magic = kind == .snapshot ? Self.snapshotMagic : Self.magic
        for position in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: magic >> (8 * UInt32(position)))) }
        bytes.append(Self.version)
        for value in [from.rawValue, to.rawValue, clusterID] {
            for position in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(position)))) }
        }
        return bytes
    }

    /// The handshake in `bytes` (exactly `byteCount` of them), checked against the receiving
    /// member's ID and cluster.
    static func decode(
        _ bytes: [UInt8], localMember: NodeID, clusterID: UInt64
    ) throws(PeerHandshakeError) -> PeerHandshake {
        guard bytes.count == byteCount else { throw .truncated }
        func integer(at offset: Int, width: Int) -> UInt64 {
            var value: UInt64 = 0
            for position in 0..<width { value |= UInt64(bytes[offset + position]) << (8 * UInt64(position)) }
            return value
        }
        let magic = UInt32(truncatingIfNeeded: integer(at: 0, width: 4))
        guard magic == Self.magic || magic == Self.snapshotMagic else { throw .badMagic(magic) }
        guard bytes[4] == Self.version else { throw .unsupportedVersion(bytes[4]) }
        let handshake = PeerHandshake(
            from: NodeID(rawValue: integer(at: 5, width: 8)),
            to: NodeID(rawValue: integer(at: 13, width: 8)),
            clusterID: integer(at: 21, width: 8),
            kind: magic == Self.snapshotMagic ? .snapshot : .messages
        )
        guard handshake.from != .none, handshake.from != localMember else { throw .invalidSender(handshake.from) }
        guard handshake.to == localMember else { throw .wrongRecipient(handshake.to) }
        guard handshake.clusterID == clusterID else { throw .clusterMismatch(handshake.clusterID) }
        return handshake
    }
}

/// Why a connection's handshake was refused.
enum PeerHandshakeError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncated
    case badMagic(UInt32)
    case unsupportedVersion(UInt8)
    /// The sender claims to be no member (ID 0) or to be us.
    case invalidSender(NodeID)
    /// The connection was meant for another member (a stale address after a member was replaced).
    case wrongRecipient(NodeID)
    case clusterMismatch(UInt64)

    var description: String {
        switch self {
        case .truncated: "peer handshake is truncated"
        case .badMagic(let magic): "peer handshake has magic \(String(magic, radix: 16)), not a swift-etcd member"
        case .unsupportedVersion(let version): "peer handshake version \(version) is not supported"
        case .invalidSender(let id): "peer handshake names an invalid sender \(id)"
        case .wrongRecipient(let id): "peer connection is meant for member \(id)"
        case .clusterMismatch(let id): "peer belongs to cluster \(String(id, radix: 16))"
        }
    }
}
