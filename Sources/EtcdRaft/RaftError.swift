/// Errors a caller of `RaftNode` can see. Broken invariants are not errors: they trap with the
/// term and index in the message, as etcd-io/raft panics.
public enum RaftError: Error, Sendable, Hashable {
    /// The proposal was not accepted: there is no leader, forwarding is disabled, a leadership
    /// transfer is in progress, this node was removed, or the uncommitted tail is too large.
    case proposalDropped
    /// A local message type (hup, beat, ...) was handed to `step` from outside.
    case stepLocalMessage
    /// A response came from a member this node does not track.
    case stepPeerNotFound
    /// Storage could not be read; the text says what failed.
    case storage(String)
}

/// What a `RaftStorage` throws. Only `.failed` is an I/O problem; the others are expected answers.
public enum RaftStorageError: Error, Sendable, Hashable {
    /// The requested index is older than the first entry kept (it was compacted into a snapshot).
    case compacted
    /// The requested index is newer than the last entry stored.
    case unavailable
    /// The snapshot being installed or created is older than what storage already has.
    case snapshotOutOfDate
    /// No snapshot can be produced right now; Raft will ask again later.
    case snapshotTemporarilyUnavailable
    /// The storage itself failed (I/O, corruption).
    case failed(String)
}
