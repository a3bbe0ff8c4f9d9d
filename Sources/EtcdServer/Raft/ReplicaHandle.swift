import EtcdCommon
import EtcdReplica
import Synchronization

/// The replica behind one lock, shared by the Raft loop (applies, backend commits) and request
/// handlers (reads).
///
/// The loop holds the lock only while applying one Ready's entries or committing the backend
/// (never across an fsync: durable checkpoints run outside it), so readers see whole applied
/// entries and never wait for the disk.
///
/// Once the member has failed (its backend or WAL), the replica may hold a state rolled back
/// below writes that were already acknowledged (a failed batch is rolled back to the last
/// commit; the WAL still holds those writes and a restart replays them). Request handlers must
/// then see nothing of it: ``read(_:)`` refuses with "etcdserver: server stopped" from the
/// moment of failure, which ``mutate(_:)`` records under the same lock that the rollback ran
/// under, so no reader can slip in between.
final class ReplicaHandle: Sendable {
    private struct State {
        let replica: Replica
        var failed = false
    }

    private let state: Mutex<State>

    init(_ replica: sending Replica) {
        state = Mutex(State(replica: replica))
    }

    /// For request handlers: runs `body` on the replica unless the member has failed.
    func read<Result: Sendable, Failure: Error>(
        _ body: (Replica) throws(Failure) -> Result
    ) throws -> Result {
        try state.withLock { (state: inout sending State) throws -> Result in
            if state.failed { throw EtcdError.stopped }
            return try body(state.replica)
        }
    }

    /// For the Raft loop's changes (apply, commit): a failure marks the member failed before the
    /// lock is released.
    func mutate<Result: Sendable, Failure: Error>(
        _ body: (Replica) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try state.withLock { (state: inout sending State) throws(Failure) -> Result in
            do throws(Failure) {
                return try body(state.replica)
            } catch {
                state.failed = true
                throw error
            }
        }
    }

    /// For the Raft loop and start-up: the replica whatever its state.
    func withReplica<Result: Sendable, Failure: Error>(
        _ body: (Replica) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try state.withLock { (state: inout sending State) throws(Failure) -> Result in try body(state.replica) }
    }

    /// Records that the member stopped on a failure elsewhere (its WAL): nothing is served after.
    func markFailed() {
        state.withLock { $0.failed = true }
    }

    var hasFailed: Bool { state.withLock { $0.failed } }
}
