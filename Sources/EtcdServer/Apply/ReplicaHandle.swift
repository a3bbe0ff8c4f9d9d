import EtcdReplica
import Synchronization

/// The replica behind one lock, shared by the apply loop (writes) and request handlers (reads).
///
/// The apply loop holds the lock for a whole batch, commit included, so readers only ever see
/// committed state.
final class ReplicaHandle: Sendable {
    private let replica: Mutex<Replica>

    init(_ replica: sending Replica) {
        self.replica = Mutex(replica)
    }

    func withReplica<Result: Sendable, Failure: Error>(
        _ body: (Replica) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try replica.withLock { (replica: inout sending Replica) throws(Failure) -> Result in try body(replica) }
    }
}
