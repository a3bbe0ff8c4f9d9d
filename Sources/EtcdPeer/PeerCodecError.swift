/// Why bytes from a peer are not a batch of Raft messages. Peer input is untrusted: every
/// malformed frame becomes one of these (the connection is then dropped), never a trap.
public enum PeerCodecError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The frame announces a format version this member does not speak.
    case unsupportedVersion(UInt8)
    /// The frame (or a count or length inside it) is larger than the bound allows.
    case tooLarge(what: String, size: UInt64, limit: UInt64)
    /// The frame ended in the middle of a field.
    case truncated(what: String)
    /// A field holds a value no sender writes (an unknown message type, a local message, ...).
    case invalid(what: String)
    /// Bytes were left over after the last message the frame announced.
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .unsupportedVersion(let version): return "peer frame version \(version) is not supported"
        case .tooLarge(let what, let size, let limit): return "peer frame: \(what) of \(size) exceeds \(limit)"
        case .truncated(let what): return "peer frame ends inside \(what)"
        case .invalid(let what): return "peer frame: invalid \(what)"
        case .trailingBytes(let count): return "peer frame has \(count) bytes after its last message"
        }
    }
}
