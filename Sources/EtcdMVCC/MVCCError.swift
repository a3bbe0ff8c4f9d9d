public import EtcdBackend

/// Errors of the MVCC layer; the server maps them to etcd's gRPC errors in one place.
public enum MVCCError: Error, Hashable, Sendable {
    /// The requested revision has been compacted (etcd's `ErrCompacted`,
    /// "mvcc: required revision has been compacted").
    case compacted
    /// The requested revision is newer than the store (etcd's `ErrFutureRev`,
    /// "mvcc: required revision is a future revision").
    case futureRevision
    /// The storage underneath failed.
    case backend(BackendError)
}
