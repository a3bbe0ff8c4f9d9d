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
        var replica: Replica
        var failed = false
    }

    private let state: Mutex<State>
    /// Set while anything but a request handler's read holds the lock: an apply, a commit, a
    /// snapshot install (see ``withReplicaUnlessApplying(_:)``).
    private let nonReaderHolds = Atomic<Bool>(false)

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
            nonReaderHolds.store(true, ordering: .relaxed)
            defer { nonReaderHolds.store(false, ordering: .relaxed) }
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
        try state.withLock { (state: inout sending State) throws(Failure) -> Result in
            nonReaderHolds.store(true, ordering: .relaxed)
            defer { nonReaderHolds.store(false, ordering: .relaxed) }
            return try body(state.replica)
        }
    }

    /// For the Raft loop's periodic work: runs `body` only if nobody holds the replica (nil
    /// otherwise), so that the loop never waits for a long apply.
    func withReplicaIfAvailable<Result: Sendable>(_ body: (Replica) -> Result) -> Result? {
        state.withLockIfAvailable { (state: inout sending State) -> Result in body(state.replica) }
    }

    /// For the Raft loop's periodic work under a read load: like
    /// ``withReplicaIfAvailable(_:)``, but when request handlers' reads hold the replica, waits
    /// for it (a read is short; readers one after another could otherwise keep the loop out for
    /// seconds). Anything else holding it (an apply, however long) is not waited for: nil.
    func withReplicaUnlessApplying<Result: Sendable>(_ body: (Replica) -> Result) -> Result? {
        if let result = withReplicaIfAvailable(body) { return result }
        guard !nonReaderHolds.load(ordering: .relaxed) else { return nil }
        return state.withLock { (state: inout sending State) -> Result in body(state.replica) }
    }

    /// Puts `newReplica` in place of the current one, under the lock: readers see the old state
    /// or the new one, never a mix. The old replica is released here (its backend connection
    /// closes once nothing else holds it).
    ///
    /// This does not clear ``hasFailed``: a member fails when its backend or WAL failed, and its
    /// Raft loop has stopped by then, so a replica put in afterwards would be served with nothing
    /// applying entries to it; only a restart (which replays the WAL) brings a failed member back.
    func replace(with newReplica: sending Replica) {
        let incoming = ReplicaTransfer(newReplica)
        state.withLock { state in
            if let replica = incoming.take() { state.replica = replica }
        }
    }

    /// For replacing the backend file under the replica (a snapshot install): under the lock,
    /// moves the replica out of the handle (leaving `standIn` in its place) and lends it to
    /// `body` with the failed flag. `body` may release it (set it to nil, closing its backend once
    /// nothing else holds it) and must leave either that replica or one it opened itself; if it
    /// leaves nil, the stand-in stays and the member is marked failed. Readers wait until this
    /// returns, so none sees a replica whose file is being swapped. Does not clear ``hasFailed``
    /// (see ``replace(with:)``).
    func withExclusiveAccess<Result: Sendable, Failure: Error>(
        standIn: sending Replica,
        _ body: (inout Replica?, inout Bool) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let placeholder = ReplicaTransfer(standIn)
        let lent = ReplicaTransfer(nil)
        return try state.withLock { (state: inout sending State) throws(Failure) -> Result in
            nonReaderHolds.store(true, ordering: .relaxed)
            defer { nonReaderHolds.store(false, ordering: .relaxed) }
            lent.put(state.replica)
            if let standIn = placeholder.take() { state.replica = standIn }
            var failed = state.failed
            defer {
                if let current = lent.take() { state.replica = current } else { failed = true }
                state.failed = failed
            }
            var current = lent.take()
            defer { lent.put(current) }
            return try body(&current, &failed)
        }
    }

    /// Records that the member stopped on a failure elsewhere (its WAL): nothing is served after.
    func markFailed() {
        state.withLock { $0.failed = true }
    }

    var hasFailed: Bool { state.withLock { $0.failed } }
}

/// Moves a replica across the lock's closure, which the region checker cannot follow.
///
/// `@unchecked Sendable` is safe here because each transfer is used only inside one call of
/// ``ReplicaHandle``, synchronously: it is filled either with a `sending` replica (no other
/// reference exists) or with the handle's own replica under the lock, and emptied under the
/// same lock before the call returns, so no two threads ever touch it and no replica escapes.
private final class ReplicaTransfer: @unchecked Sendable {
    private var replica: Replica?

    init(_ replica: sending Replica?) {
        self.replica = replica
    }

    func put(_ replica: Replica?) { self.replica = replica }

    func take() -> Replica? {
        defer { replica = nil }
        return replica
    }
}
