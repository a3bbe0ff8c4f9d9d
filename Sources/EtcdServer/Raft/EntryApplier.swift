import CoreMetrics
import Dispatch
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Logging
import Synchronization

/// Applies committed entries to the replica on a queue of its own, so that the Raft loop's
/// thread only ticks, steps, persists and sends: a slow apply (a large txn, a lease revocation
/// with many keys) or a slow backend commit can no longer hold up heartbeats and votes and cause
/// an election (etcd likewise applies on its own goroutine, fed by the raft node's loop).
///
/// Entries are applied in the order the loop hands them over. The applier also owns the backend
/// batch: it commits it when full or a batch interval old, checkpoints the backend, and deletes
/// compacted history a batch at a time with pauses in between.
///
/// The loop waits for the applier only where Raft needs the state machine and the log to agree:
/// a membership change (Raft must learn whether it was applied before the next Ready), a
/// snapshot received from the leader (the backend is replaced), a snapshot of its own (the
/// backend must hold everything up to it durably) and shutdown. Everything else (answering
/// writers, releasing linearizable reads once their read index is applied, telling the loop that
/// its publication was applied) happens here as entries are applied.
final class EntryApplier: Sendable {
    /// How the applier paces the backend.
    struct Settings: Sendable {
        var backendBatchInterval: Duration
        var backendBatchLimit: Int
        var backendCheckpointFrames: Int
        var compactionBatchLimit: Int
        var compactionSleepInterval: Duration
        /// Where each backend commit's duration goes (etcd's
        /// `etcd_disk_backend_commit_duration_seconds`), if anywhere.
        var commitDurations: CoreMetrics.Timer?
    }

    /// What only the applier's queue touches (behind a lock for the compiler's sake; never
    /// contended except by the loop's synchronous calls, which run on the queue anyway).
    private struct QueueState {
        var checkpointer: BackendCheckpointer?
        var lastBackendCommit = ContinuousClock.now
        var commitScheduled = false
        var compactionScheduled = false
        /// Set once applying or committing failed, or the applier was stopped: nothing more is
        /// applied or committed.
        var stopped = false
    }

    /// The applied index and the linearizable reads waiting for it, shared with the loop.
    private struct ReadGate {
        var appliedIndex: UInt64
        var waiting: [(index: UInt64, ids: [UInt64])] = []
    }

    let replica: ReplicaHandle
    private let pending: PendingRequests
    private let status: MemberStatusBoard
    private let publishChanges: @Sendable ([RevisionChanges]) -> Void
    private let wakeLoop: @Sendable () -> Void
    private let settings: Settings
    private let logger: Logger
    private let queue = DispatchQueue(label: "etcd.apply")
    private let queueState: Mutex<QueueState>
    private let gate: Mutex<ReadGate>
    /// Why applying failed, for the loop to stop the member with.
    private let failure = Mutex<String?>(nil)
    /// The loop asks to be woken once the applied index reaches this (0: never).
    private let wakeIndex = Atomic<UInt64>(0)
    /// A request of the loop's own whose result it waits for (its publication; 0: none), and
    /// whether that result has been applied.
    private let awaitedRequest = Atomic<UInt64>(0)
    private let awaitedRequestApplied = Atomic<Bool>(false)

    init(
        replica: ReplicaHandle, checkpointer: sending BackendCheckpointer?, pending: PendingRequests,
        status: MemberStatusBoard, settings: Settings, logger: Logger,
        publishChanges: @escaping @Sendable ([RevisionChanges]) -> Void,
        wakeLoop: @escaping @Sendable () -> Void
    ) {
        self.replica = replica
        self.pending = pending
        self.status = status
        self.settings = settings
        self.logger = logger
        self.publishChanges = publishChanges
        self.wakeLoop = wakeLoop
        queueState = Mutex(QueueState(checkpointer: checkpointer))
        let applied = replica.withReplica { $0.appliedIndex }
        gate = Mutex(ReadGate(appliedIndex: applied))
        status.publishApplied(applied)
        publishDatabaseSize()
    }

    // MARK: For the loop

    /// The index of the last entry applied (or of the snapshot installed).
    var appliedIndex: UInt64 { gate.withLock { $0.appliedIndex } }

    /// Why the applier stopped on an error, if it did.
    var failureReason: String? { failure.withLock { $0 } }

    /// Applies `entries` after everything handed over before; returns at once.
    func enqueue(_ entries: [Entry]) {
        queue.async { _ = try? self.apply(entries) }
    }

    /// Applies `entries` after everything handed over before and waits: returns the indexes of
    /// the membership changes among them that were refused.
    func applyNow(_ entries: [Entry]) throws(MemberError) -> Set<UInt64> {
        try onQueue { () throws(MemberError) in try self.apply(entries) }
    }

    /// Waits until everything handed over is applied.
    func drain() throws(MemberError) {
        try onQueue { () throws(MemberError) in
            if let reason = self.failureReason { throw .backend(reason) }
        }
    }

    /// Linearizable reads whose read index is `index`: answered once it is applied.
    func releaseReads(_ ids: [UInt64], whenApplied index: UInt64) {
        let now = gate.withLock { gate -> Bool in
            guard index > gate.appliedIndex else { return true }
            gate.waiting.append((index, ids))
            return false
        }
        if now { pending.completeReads(ids, with: .success(())) }
    }

    /// Wakes the loop once the applied index reaches `index`.
    func wakeLoop(whenApplied index: UInt64) {
        wakeIndex.store(index, ordering: .releasing)
        if appliedIndex >= index { wakeLoop() }
    }

    /// Watches for the result of the loop's own request `requestID` (see ``takeAwaitedResult()``).
    func await(requestID: UInt64) {
        awaitedRequest.store(requestID, ordering: .releasing)
    }

    /// Whether the awaited request has been applied since the last call.
    func takeAwaitedResult() -> Bool {
        awaitedRequestApplied.exchange(false, ordering: .acquiringAndReleasing)
    }

    /// Commits the backend batch after everything handed over, durably when asked (the
    /// backend then holds every applied entry on disk); returns the applied index it covers.
    @discardableResult
    func commit(durably: Bool) throws(MemberError) -> UInt64 {
        try onQueue { () throws(MemberError) -> UInt64 in
            try self.queueState.withLock { (state) throws(MemberError) in
                if let reason = self.failureReason { throw .backend(reason) }
                try self.commitBackend(&state, durably: durably)
            }
            return self.appliedIndex
        }
    }

    /// Replaces the backend with a snapshot's image after everything handed over was applied:
    /// `install` gets the queue's checkpointer released (no other connection may be open on the
    /// file being swapped) and returns the index the new backend has applied and a checkpointer
    /// on it. Reads waiting for an index the snapshot covers are released.
    func restore(
        _ install: () throws -> (appliedIndex: UInt64, checkpointer: BackendCheckpointer?)
    ) throws(MemberError) -> UInt64 {
        try onQueue { () throws(MemberError) -> UInt64 in
            let index = try self.queueState.withLock { (state) throws(MemberError) -> UInt64 in
                state.checkpointer = nil
                do {
                    let (index, checkpointer) = try install()
                    state.checkpointer = checkpointer
                    state.lastBackendCommit = .now
                    return index
                } catch {
                    throw .backend("\(error)")
                }
            }
            self.advanceAppliedIndex(to: index, force: true)
            self.publishDatabaseSize()
            return index
        }
    }

    /// Commits durably (unless `durably` is false) and stops: nothing is applied or committed
    /// after, including commits already scheduled.
    func finish(durably: Bool) throws(MemberError) {
        try onQueue { () throws(MemberError) in
            try self.queueState.withLock { (state) throws(MemberError) in
                defer { state.stopped = true }
                guard !state.stopped else { return }
                try self.commitBackend(&state, durably: durably)
            }
        }
    }

    /// Stops without committing (the member failed).
    func abandon() {
        queueState.withLock { $0.stopped = true }
    }

    // MARK: On the queue

    /// Runs `body` on the queue after everything handed over, and waits for it.
    private func onQueue<Value: Sendable>(_ body: () throws(MemberError) -> Value) throws(MemberError) -> Value {
        let outcome: Result<Value, MemberError> = queue.sync {
            do throws(MemberError) {
                return .success(try body())
            } catch {
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    private func apply(_ entries: [Entry]) throws(MemberError) -> Set<UInt64> {
        guard let last = entries.last else { return [] }
        let stopped = queueState.withLock { $0.stopped }
        if stopped {
            throw .backend(failureReason ?? "the member is stopping; committed entries were not applied")
        }
        let outcome: (results: [AppliedRequest], changes: [RevisionChanges], refused: Set<UInt64>)
        do {
            outcome = try replica.mutate { (replica) throws(ReplicaError) in
                (try replica.apply(entries), replica.store.takeChanges(), replica.takeRefusedConfChanges())
            }
        } catch {
            // The replica marked itself failed: nothing is served from it any more.
            fail("applying entries \(entries[0].index)-\(last.index): \(error)")
            throw .backend("\(error)")
        }
        publishChanges(outcome.changes)
        let awaited = awaitedRequest.load(ordering: .acquiring)
        var wake = false
        if awaited != 0, outcome.results.contains(where: { $0.requestID == awaited }) {
            awaitedRequest.store(0, ordering: .releasing)
            awaitedRequestApplied.store(true, ordering: .releasing)
            wake = true
        }
        advanceAppliedIndex(to: last.index, force: false)
        pending.complete(outcome.results)
        let wanted = wakeIndex.load(ordering: .acquiring)
        if wanted != 0, last.index >= wanted {
            wakeIndex.store(0, ordering: .releasing)
            wake = true
        }
        if wake { wakeLoop() }
        do {
            try backendDuties()
        } catch {
            fail("committing the backend: \(error)")
            throw error
        }
        return outcome.refused
    }

    private func advanceAppliedIndex(to index: UInt64, force: Bool) {
        let released = gate.withLock { gate -> [UInt64] in
            gate.appliedIndex = force ? index : max(gate.appliedIndex, index)
            status.publishApplied(gate.appliedIndex)
            guard !gate.waiting.isEmpty else { return [] }
            var released: [UInt64] = []
            let applied = gate.appliedIndex
            gate.waiting.removeAll { waiting in
                guard waiting.index <= applied else { return false }
                released.append(contentsOf: waiting.ids)
                return true
            }
            return released
        }
        if !released.isEmpty { pending.completeReads(released, with: .success(())) }
    }

    /// After an apply: commits the batch if it is full, or schedules its commit for when it is
    /// a batch interval old; schedules the next compaction step if compacted rows wait.
    private func backendDuties() throws(MemberError) {
        let (open, entries, compactionRows) = replica.withReplica {
            ($0.hasOpenBatch, $0.entriesInBatch, $0.store.pendingCompactionRowCount)
        }
        try queueState.withLock { (state) throws(MemberError) in
            if open && entries >= settings.backendBatchLimit {
                try commitBackend(&state, durably: false)
            } else if open && !state.commitScheduled {
                state.commitScheduled = true
                let due = state.lastBackendCommit.duration(to: .now)
                schedule(after: max(.zero, settings.backendBatchInterval - due)) { $0.commitIfDue() }
            }
            if compactionRows > 0 && !state.compactionScheduled {
                state.compactionScheduled = true
                schedule(after: settings.compactionSleepInterval) { $0.compactionStep() }
            }
        }
    }

    private func schedule(after delay: Duration, _ work: @escaping @Sendable (EntryApplier) -> Void) {
        let nanoseconds = Int(min(delay, .seconds(3_600)).nanoseconds)
        queue.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { work(self) }
    }

    /// A scheduled commit: commits the batch once it is a batch interval old.
    private func commitIfDue() {
        let open = replica.withReplica { $0.hasOpenBatch }
        do {
            try queueState.withLock { (state) throws(MemberError) in
                state.commitScheduled = false
                guard !state.stopped, open else { return }
                let age = state.lastBackendCommit.duration(to: .now)
                if age >= settings.backendBatchInterval {
                    try commitBackend(&state, durably: false)
                } else {
                    state.commitScheduled = true
                    schedule(after: settings.backendBatchInterval - age) { $0.commitIfDue() }
                }
            }
        } catch {
            fail("committing the backend: \(error)")
        }
    }

    /// Deletes the next batch of compacted rows (etcd's `--experimental-compaction-batch-limit`),
    /// then pauses (`--experimental-compaction-sleep-interval`) so that applies go on meanwhile.
    private func compactionStep() {
        let stopped = queueState.withLock { state -> Bool in
            state.compactionScheduled = false
            return state.stopped
        }
        guard !stopped else { return }
        let limit = settings.compactionBatchLimit
        do {
            let left = try replica.mutate { (replica) throws(ReplicaError) in try replica.compactStep(limit: limit) }
            if left == 0 {
                logger.info("finished scheduled compaction", metadata: [
                    "compact_revision": "\(replica.withReplica { $0.store.compactedRevision })"
                ])
            }
            try backendDuties()
        } catch {
            fail("compacting the backend: \(error)")
        }
    }

    /// One defragmentation step on the applier's queue, between applies (see
    /// ``Replica/defragmentStep(pages:)``); returns the free pages left. Afterwards the batch is
    /// committed on the usual schedule, and the database's size published.
    func defragmentStep(pages: Int) async throws -> Int64 {
        try await laterOnQueue {
            let left = try self.replica.mutate { (replica) throws(ReplicaError) in
                try replica.defragmentStep(pages: pages)
            }
            try self.backendDuties()
            return left
        } failing: { "defragmenting the backend: \($0)" }
    }

    /// Commits the open backend batch now, after what is queued, rather than at the end of its
    /// interval: before a snapshot is copied (etcd commits its batch before a snapshot too) and
    /// after a defragmentation (so the smaller size is what the quota sees).
    func commitNow() async throws {
        try await laterOnQueue {
            try self.queueState.withLock { (state) throws(MemberError) in try self.commitBackend(&state, durably: false) }
        } failing: { "committing the backend: \($0)" }
    }

    /// Runs `work` on the applier's queue after everything queued before it, for a request
    /// handler that must not block its thread; a failure stops the member, as one in an apply.
    private func laterOnQueue<Value: Sendable>(
        _ work: @escaping @Sendable () throws -> Value, failing reason: @escaping @Sendable (any Error) -> String
    ) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                guard !self.queueState.withLock({ $0.stopped }) else {
                    continuation.resume(throwing: EtcdError.stopped)
                    return
                }
                do {
                    continuation.resume(returning: try work())
                } catch {
                    self.fail(reason(error))
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Commits the backend batch under the replica's lock, then, outside it, checkpoints the
    /// backend: fully (syncing it) when `durably`, passively once its WAL has grown. Readers wait
    /// for the commit (a write to SQLite's WAL file) but never for the disk.
    private func commitBackend(_ state: inout QueueState, durably: Bool) throws(MemberError) {
        let syncsItself = state.checkpointer == nil && durably
        // The commit and the checkpoint after it together are what reaches the disk, as the
        // commit of etcd's bbolt transaction (its write and fsync) is.
        let started = ContinuousClock.now
        defer {
            if let timer = settings.commitDurations {
                let (seconds, attoseconds) = started.duration(to: .now).components
                timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
            }
        }
        let framesInWAL: Int
        let databaseSize: Int64?
        do {
            (framesInWAL, databaseSize) = try replica.mutate { (replica) throws(ReplicaError) in
                try replica.commitBackend(durably: syncsItself)
                return (replica.store.backend.framesInWAL, try? replica.store.backend.sizeBytes)
            }
        } catch {
            throw .backend("\(error)")
        }
        if let databaseSize { status.publishDatabaseSize(databaseSize) }
        state.lastBackendCommit = .now
        guard let checkpointer = state.checkpointer else { return }
        do {
            if durably {
                try checkpointer.checkpointFully()
            } else if framesInWAL >= settings.backendCheckpointFrames {
                try checkpointer.checkpointPassively()
            }
        } catch {
            // A durable commit that did not reach the disk must not let the WAL behind it go.
            replica.markFailed()
            throw .backend("\(error)")
        }
    }

    private func publishDatabaseSize() {
        if let size = try? replica.withReplica({ (replica) throws(BackendError) in try replica.store.backend.sizeBytes }) {
            status.publishDatabaseSize(size)
        }
    }

    /// Stops applying for good and tells the loop, which stops the member.
    private func fail(_ reason: String) {
        logger.critical("apply failed", metadata: ["error": "\(reason)"])
        failure.withLock { if $0 == nil { $0 = reason } }
        queueState.withLock { $0.stopped = true }
        replica.markFailed()
        wakeLoop()
    }
}
