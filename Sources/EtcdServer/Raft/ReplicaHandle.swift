import EtcdReplica
import Synchronization

/// The replica behind one lock, shared by the Raft loop (applies, backend commits) and request
/// handlers (reads).
///
/// The loop holds the lock only while applying one Ready's entries or committing the backend, so
/// readers see whole applied entries and never wait for a WAL sync.
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
