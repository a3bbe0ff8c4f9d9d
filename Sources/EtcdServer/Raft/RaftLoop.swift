import CoreMetrics
import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import SwiftProtobuf
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import NIOPosix
import Synchronization

/// How the Raft loop paces itself.
struct RaftLoopConfiguration: Sendable {
    /// One Raft tick (etcd's `--heartbeat-interval`).
    var tickInterval: Duration = .milliseconds(100)
    /// Longest a backend transaction stays open (`--backend-batch-interval`).
    var backendBatchInterval: Duration = .milliseconds(100)
    /// Most applied entries in one backend transaction (`--backend-batch-limit`).
    var backendBatchLimit: Int = 10_000
    /// Most proposals put into one Ready cycle (and so one WAL write).
    var maxProposalsPerCycle: Int = 1_000
    /// Durable backend commits are skipped (`--unsafe-no-fsync`).
    var unsafeNoFsync = false
    /// `--election-timeout`: what a new leader adds to every lease before expiring any, the grace
    /// after a stall, and the longest gap between lease checks that is not a stall.
    var electionTimeout: Duration = .seconds(1)
    /// Most expired leases handed to revocation per tick (etcd revokes at most 1,000 per second).
    var leaseRevocationsPerTick: Int = 100
    /// Rows of compacted history deleted per step (etcd's `--experimental-compaction-batch-limit`).
    var compactionBatchLimit: Int = 1_000
    /// Pause between compaction steps (etcd's `--experimental-compaction-sleep-interval`), during
    /// which the applier applies whatever arrives.
    var compactionSleepInterval: Duration = .milliseconds(10)
    /// WAL pages after which the loop checkpoints the backend (SQLite's automatic threshold).
    var backendCheckpointFrames: Int = 1_000
    /// Where backend commit durations are recorded (`/metrics`), if anywhere.
    var backendCommitDurations: CoreMetrics.Timer?
    /// This member's attributes, published through Raft at start (etcd's publish); nil in tests
    /// that do not care.
    var localMember: ClusterMember?
    /// The cluster version the leader records when none is (etcd's `clusterVersionSet`).
    var clusterVersion = EtcdVersion.cluster
    /// Hands Raft's messages to the peers (the peer transport); never waits.
    var sendToPeers: @Sendable ([EtcdRaft.Message]) -> Void = { _ in }
    /// Told the membership after every applied membership change (the transport's peers follow
    /// it, and a member that was removed stops).
    var membershipChanged: @Sendable (ClusterMembership) -> Void = { _ in }
    /// Installs a backend image received from the leader for a Raft snapshot at the index, in
    /// place of the replica's backend (nil: this member cannot take snapshots). The applier has
    /// released its checkpointer's connection first, and opens a new one after.
    var installSnapshot: (@Sendable (_ imagePath: String, _ snapshotIndex: UInt64, _ replica: ReplicaHandle) throws -> UInt64)?
    /// Opens the loop's checkpointer on the backend again after an install.
    var reopenCheckpointer: @Sendable () throws -> BackendCheckpointer? = { nil }
    /// Told once this member's attributes are applied (etcd's ReadyNotify: clients are served
    /// from then on).
    var published: @Sendable () -> Void = {}
}

/// The one owner of the member's Raft: takes what the mailbox collected, steps it into Raft and
/// runs Ready cycles (persist to the WAL, apply to the replica, answer waiters), commits the
/// backend batch when due, and snapshots every `--snapshot-count` entries.
///
/// The loop runs on a dedicated thread so that its blocking work (the WAL's fsync) never holds up
/// the threads serving requests. Committed entries are applied on the ``EntryApplier``'s queue,
/// not here: a slow apply or backend commit cannot delay ticks, heartbeats or votes. The
/// replica's lock is taken only to apply and to commit, so reads go on while the WAL syncs.
final class RaftLoop: Sendable {
    let mailbox: RaftMailbox
    let pending: PendingRequests
    let status: MemberStatusBoard
    private let core: Mutex<LoopCore>
    /// The loop's applier, for work a request handler schedules between applies (defragmentation).
    let applier: EntryApplier
    private let configuration: RaftLoopConfiguration
    private let logger: Logger
    private let thread = NIOThreadPool(numberOfThreads: 1)
    /// Why work done on another thread while the loop was idle stopped the member, if it did.
    private let inlineFailure = Mutex<MemberError?>(nil)
    /// How many times work was done on another thread while the loop was idle.
    let inlineRuns = Atomic<UInt64>(0)

    /// `publishChanges` gets each applied batch's revisions before the writers are answered (the
    /// watch hub), so nobody learns of a revision its watchers have not been handed.
    /// `checkpointer` checkpoints the replica's backend outside the replica's lock; nil when the
    /// backend checkpoints itself (or has no file).
    init(
        member: sending RaftMember, replica: ReplicaHandle, checkpointer: sending BackendCheckpointer? = nil,
        mailbox: RaftMailbox, pending: PendingRequests,
        status: MemberStatusBoard, configuration: RaftLoopConfiguration, logger: Logger,
        publishChanges: @escaping @Sendable ([RevisionChanges]) -> Void = { _ in }
    ) {
        self.mailbox = mailbox
        self.pending = pending
        self.status = status
        self.configuration = configuration
        self.logger = logger
        let core = LoopCore(
            member: member, replica: replica, checkpointer: checkpointer, pending: pending, status: status,
            configuration: configuration, logger: logger, publishChanges: publishChanges,
            wakeLoop: { [mailbox] in mailbox.nudge() }
        )
        applier = core.applier
        self.core = Mutex(core)
        thread.start()
        mailbox.takePeerMessagesDirectly { [weak self] messages in self?.stepInlineIfIdle(messages) ?? false }
    }

    deinit {
        thread.shutdownGracefully { _ in }
    }

    /// Brings the member up to date before it serves anyone: applies what the WAL holds beyond the
    /// backend, and (alone in its cluster) elects itself and applies the new term's empty entry.
    func start() async throws {
        try await onLoopThread { try self.core.withLock { (core) throws(MemberError) in try core.start() } }
    }

    /// Closes the WAL of a member that will not run (startup failed elsewhere).
    func abandon() async {
        try? await onLoopThread {
            try self.core.withLock { (core) throws(MemberError) in
                core.applier.abandon()
                try core.member.close()
            }
        }
    }

    /// Serves a linearizable read point on the caller's thread when the loop is idle and this
    /// member is the only voter: Raft then answers ReadIndex at once, from memory, and the read
    /// need not cross to the loop's thread and back. Returns false when it could not (the loop is
    /// busy, or the answer needs other members); the caller then queues the read as usual.
    func readIndexIfIdle() -> Bool {
        let served = core.withLockIfAvailable { core in core.readIndexInline() }
        return served ?? false
    }

    /// Asks Raft for the read index of the registered read `id` on the caller's thread when the
    /// loop is idle, instead of waking the loop's thread for it (see `stepInlineIfIdle`). Returns
    /// false when it could not; the caller then queues the read as usual.
    func requestReadIndexIfIdle(_ id: UInt64) -> Bool {
        runInlineIfIdle { (core) throws(MemberError) in try core.requestReadIndexInline(for: id) }
    }

    /// Forwards a follower's proposal to the leader on the caller's thread when the loop is idle
    /// (see `stepInlineIfIdle`). Returns false when it could not (the loop is busy, this member
    /// leads, or knows no leader); the caller then queues the proposal as usual.
    func forwardProposalIfIdle(_ proposal: QueuedProposal) -> Bool {
        runInlineIfIdle { (core) throws(MemberError) in try core.forwardProposalInline(proposal) }
    }

    /// Steps what a peer sent on the caller's thread (the connection's event loop) when the loop
    /// is idle, instead of waking the loop's thread: a linearizable read through a follower
    /// crosses the peer transport four times (the read index request, the leader's heartbeat
    /// and its answer, the read index), and each crossing would otherwise cost two thread
    /// wake-ups. Only messages that leave nothing to persist or apply qualify (see
    /// `LoopCore.stepInline`); false means the caller queues them as usual.
    func stepInlineIfIdle(_ messages: [EtcdRaft.Message]) -> Bool {
        runInlineIfIdle { (core) throws(MemberError) in try core.stepInline(messages) }
    }

    /// Runs `body` on the caller's thread if the loop's lock is free. A failure stops the member
    /// as one on the loop's thread does: the loop is woken to throw it.
    private func runInlineIfIdle(_ body: (LoopCore) throws(MemberError) -> Bool) -> Bool {
        let outcome = core.withLockIfAvailable { core -> Result<Bool, MemberError> in
            do throws(MemberError) {
                return .success(try body(core))
            } catch {
                core.fail()
                return .failure(error)
            }
        }
        switch outcome {
        case nil: return false
        case .success(let done):
            if done { inlineRuns.add(1, ordering: .relaxed) }
            return done
        case .failure(let error):
            inlineFailure.withLock { $0 = $0 ?? error }
            mailbox.nudge()
            return true
        }
    }

    /// Runs until the mailbox is closed and drained; then commits the backend durably and closes
    /// the WAL. Throws if the member had to stop (its WAL or backend failed).
    func run() async throws {
        let maxProposals = configuration.maxProposalsPerCycle
        let mailbox = self.mailbox
        do {
            // The loop owns its thread for its whole life, blocking on the mailbox between cycles.
            try await onLoopThread {
                while let work = mailbox.nextBlocking(maxProposals: maxProposals) {
                    if let failure = self.inlineFailure.withLock({ $0 }) { throw failure }
                    try self.core.withLock { (core) throws(MemberError) in
                        do throws(MemberError) {
                            try core.process(work)
                        } catch {
                            core.fail()
                            throw error
                        }
                    }
                }
                try self.core.withLock { (core) throws(MemberError) in try core.stop() }
            }
        } catch {
            logger.critical("member stopped: \(error)")
            mailbox.close()
            pending.failAll(with: ReplicaError.storage("member stopped: \(error)"))
            throw error
        }
        pending.failAll(with: EtcdError.stopped)
        logger.debug("raft loop drained")
    }

    /// Runs `body` on the loop's thread. Deliberately deaf to task cancellation (unlike
    /// `runIfActive`): cancelling the server must still let the loop drain, commit and close.
    private func onLoopThread(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            thread.submit { state in
                guard state == .active else {
                    continuation.resume(throwing: MemberError.backend("the Raft loop's thread has stopped"))
                    return
                }
                continuation.resume(with: Result { try body() })
            }
        }
    }

    /// Ticks Raft every tick interval and expires overdue requests, until the mailbox closes.
    func runTicker() async {
        while !mailbox.isClosed {
            do {
                try await Task.sleep(for: configuration.tickInterval)
            } catch {
                return
            }
            mailbox.tick()
            pending.expire(now: .now)
        }
    }
}

/// The loop's state, behind the loop's lock: used by the loop's thread, and by a request handler
/// only for `readIndexInline` when the loop is idle (the lock is free).
final class LoopCore {
    let member: RaftMember
    let replica: ReplicaHandle
    /// Applies what Raft committed, on its own queue.
    let applier: EntryApplier
    /// Backend images received with the leader's snapshot messages, by snapshot index, until
    /// Raft hands the snapshot over to be installed.
    private var receivedImages: [UInt64: String] = [:]
    let pending: PendingRequests
    let status: MemberStatusBoard
    let configuration: RaftLoopConfiguration
    let logger: Logger
    /// Reads waiting for their ReadIndex answer, by request context.
    private var readsAwaitingIndex: [UInt64: [UInt64]] = [:]
    /// ReadIndex request contexts: unique across the cluster, since the leader ignores a request
    /// whose context is already pending (etcd-io/raft does too) and followers send theirs to it.
    /// The member ID's low 16 bits lead, as in etcd's request IDs, then a random start.
    private var nextReadContext: UInt64
    /// When each context in `readsAwaitingIndex` was last asked for: a request or its answer
    /// can be lost on the way to or from the leader, so it is asked again after
    /// `readIndexRetryInterval` (etcd's `readIndexRetryTime`, 500 ms).
    private var readRequestedAt: [UInt64: ContinuousClock.Instant] = [:]
    static let readIndexRetryInterval: Duration = .milliseconds(500)
    /// Most committed entries that may wait to be applied before new proposals are refused as
    /// "too many requests" (etcd's `maxGapBetweenApplyAndCommitIndex`).
    static let maxApplyBacklog: UInt64 = 5_000
    /// A leader's first (empty) entry of its term, until it is applied: from then on everything
    /// of earlier terms is applied too, and the lessor may take over expiry (etcd's Promote).
    private var ownTermEntry: (index: UInt64, term: UInt64)?
    /// Set at shutdown and when the member failed: Raft must not be touched any more (a failed
    /// cycle may have left a Ready that was never advanced).
    private var stopped = false
    /// Set once `start` is done: from then on work may also be done on other threads while the
    /// loop is idle (see `RaftLoop.stepInlineIfIdle`); before, everything waits for the loop.
    private var started = false
    /// When the leader last looked for expired leases; a longer gap than an election timeout is
    /// a stall (see `leaseDuties`).
    private var lastLeaseCheck: MonotonicTime?
    /// Ticks in a row whose lease duties were skipped because the replica was busy.
    private var skippedLeaseChecks = 0
    /// Past this many skipped ticks the loop waits for the replica (see `leaseDuties`).
    static let maxSkippedLeaseChecks = 3
    /// Expired leases waiting for this member's leadership to be confirmed by a ReadIndex round
    /// (context and term of the request) before their revocations are proposed.
    private var leaseConfirmation: (context: UInt64, term: UInt64, leases: [LeaseID])?
    /// This member's publication of its attributes: when the latest attempt was made (the
    /// applier reports when one of them has been applied).
    private struct Publication {
        var lastAttempt: ContinuousClock.Instant?
        var done = false
    }
    private var publication = Publication()
    /// The term in which this leader last proposed the cluster version (once per term).
    private var versionProposedInTerm: UInt64 = 0

    init(
        member: RaftMember, replica: ReplicaHandle, checkpointer: sending BackendCheckpointer?, pending: PendingRequests,
        status: MemberStatusBoard, configuration: RaftLoopConfiguration, logger: Logger,
        publishChanges: @escaping @Sendable ([RevisionChanges]) -> Void,
        wakeLoop: @escaping @Sendable () -> Void = {}
    ) {
        self.member = member
        self.replica = replica
        applier = EntryApplier(
            replica: replica, checkpointer: checkpointer, pending: pending, status: status,
            settings: EntryApplier.Settings(
                backendBatchInterval: configuration.backendBatchInterval,
                backendBatchLimit: configuration.backendBatchLimit,
                backendCheckpointFrames: configuration.backendCheckpointFrames,
                compactionBatchLimit: configuration.compactionBatchLimit,
                compactionSleepInterval: configuration.compactionSleepInterval,
                commitDurations: configuration.backendCommitDurations
            ),
            logger: logger, publishChanges: publishChanges, wakeLoop: wakeLoop
        )
        self.pending = pending
        self.status = status
        self.configuration = configuration
        self.logger = logger
        nextReadContext = (member.id.rawValue & 0xffff) << 48 | UInt64.random(in: 0 ..< (1 << 40)) << 8
    }

    func start() throws(MemberError) {
        try runCycles()
        try settle()
        configuration.membershipChanged(replica.withReplica { $0.membership })
        if member.isSoleVoter {
            member.campaignIfAlone()
            try runCycles()
            try settle()
            publishMember()
            try runCycles()
            try settle()
            guard member.isLeader, applier.appliedIndex >= member.committedIndex else {
                throw .inconsistent(
                    "the lone member did not become leader at start (term \(member.term), "
                        + "applied \(applier.appliedIndex), committed \(member.committedIndex))")
            }
        }
        // Otherwise the member publishes itself once a leader is known (see `publishDuties`).
        // What was replayed is committed to the backend before serving.
        try applier.commit(durably: false)
        publishStatus()
        started = true
    }

    /// Waits until everything committed so far is applied, then takes in what the applier
    /// reported (for start-up, and for tests that drive the core step by step).
    func settle() throws(MemberError) {
        try applier.drain()
        try takeApplyReports()
    }

    /// What the applier did since the loop last looked: a failure stops the member; this
    /// member's publication or its own term's first entry being applied lets the loop go on
    /// with what waited for them.
    private func takeApplyReports() throws(MemberError) {
        if let reason = applier.failureReason { throw .backend(reason) }
        if applier.takeAwaitedResult(), !publication.done {
            publication = Publication(lastAttempt: nil, done: true)
            configuration.published()
        }
        if let entry = ownTermEntry, applier.appliedIndex >= entry.index {
            ownTermEntry = nil
            if member.isLeader && member.term == entry.term {
                promoteLessor()
                if !member.isSoleVoter { recordClusterVersion() }
            }
        }
    }

    func process(_ work: MailboxWork) throws(MemberError) {
        try takeApplyReports()
        for event in work.peerEvents {
            switch event {
            case .messages(let messages):
                for message in messages { member.step(message) }
            case .snapshot(let message, let imagePath):
                let index = message.snapshot?.metadata.index ?? 0
                // Only the newest image can still be wanted.
                for (older, path) in receivedImages where older <= index && path != imagePath {
                    try? FileManager.default.removeItem(atPath: path)
                    receivedImages[older] = nil
                }
                receivedImages[index] = imagePath
                member.step(message)
            case .unreachable(let peer):
                member.reportUnreachable(peer)
            case .snapshotStatus(let peer, let status):
                member.reportSnapshot(peer, status: status)
            case .transferLeadership(let transferee):
                member.transferLeadership(to: transferee)
            }
        }
        if work.tick {
            member.tick()
            leaseDuties()
            publishDuties()
            retryUnansweredReads()
        }
        if !work.proposals.isEmpty {
            var entries: [QueuedProposal] = []
            for proposal in work.proposals {
                guard let change = proposal.confChange else {
                    entries.append(proposal)
                    continue
                }
                do {
                    try member.proposeConfChange(change)
                } catch {
                    pending.failWrites([proposal.id], with: proposalRefusal(error))
                }
            }
            if !entries.isEmpty && member.committedIndex > applier.appliedIndex + Self.maxApplyBacklog {
                // Apply is far behind: taking more would only grow the backlog.
                pending.failWrites(entries.map(\.id), with: EtcdError.tooManyRequests)
            } else if !entries.isEmpty {
                do {
                    try member.propose(entries.map(\.data))
                } catch {
                    pending.failWrites(entries.map(\.id), with: proposalRefusal(error))
                }
            }
        }
        if !work.reads.isEmpty { requestReadIndex(for: work.reads) }
        try runCycles()
        if member.snapshotDue(appliedIndex: applier.appliedIndex) {
            // The snapshot lets the WAL before it go, so the backend must hold it on disk first.
            // This waits for the apply backlog: the snapshot's membership is Raft's current one,
            // which is what the entries handed over so far add up to.
            let index = try applier.commit(durably: !configuration.unsafeNoFsync)
            try member.createSnapshot(at: index)
        }
        publishStatus(withProgress: work.tick)
    }

    /// What a proposal Raft refused gets: no leader to forward it to, or (a transfer or a
    /// membership change in progress) etcd's timeout.
    private func proposalRefusal(_ error: RaftError) -> EtcdError {
        member.leader == .none ? .noLeader : .timeout
    }

    /// The member cannot go on: nothing more is served from it (see `ReplicaHandle.read`).
    func fail() {
        stopped = true
        applier.abandon()
        replica.markFailed()
    }

    /// Applies what is committed, commits the backend durably and closes the WAL (graceful
    /// shutdown).
    func stop() throws(MemberError) {
        stopped = true
        try applier.finish(durably: !configuration.unsafeNoFsync)
        try member.close()
    }

    /// See `RaftLoop.readIndexIfIdle`.
    func readIndexInline() -> Bool {
        guard !stopped else { return false }
        nextReadContext += 1
        guard let index = member.immediateReadIndex(context: Self.bytes(of: nextReadContext)) else { return false }
        return index <= applier.appliedIndex
    }

    /// See `RaftLoop.requestReadIndexIfIdle`.
    func requestReadIndexInline(for read: UInt64) throws(MemberError) -> Bool {
        // A lease confirmation's answer would propose revocations, whose WAL sync belongs on
        // the loop's thread.
        guard started, !stopped, leaseConfirmation == nil else { return false }
        requestReadIndex(for: [read])
        try runCycles()
        return true
    }

    /// See `RaftLoop.forwardProposalIfIdle`.
    func forwardProposalInline(_ proposal: QueuedProposal) throws(MemberError) -> Bool {
        guard started, !stopped, leaseConfirmation == nil, proposal.confChange == nil, !member.isLeader, member.leader != .none,
            member.committedIndex <= applier.appliedIndex + Self.maxApplyBacklog
        else { return false }
        do {
            try member.propose([proposal.data])
        } catch {
            pending.failWrites([proposal.id], with: proposalRefusal(error))
        }
        try runCycles()
        return true
    }

    /// See `RaftLoop.stepInlineIfIdle`: steps `messages` and runs the Ready cycles they cause if
    /// every one of them is traffic of the current term that brings no entries: heartbeats,
    /// read indexes, append responses and the leader's appends that only carry its commit
    /// index. Their cycles send messages, answer reads and hand committed entries to the
    /// applier, but have nothing to sync: a new term or new entries are left to the loop's
    /// thread. Anything else (and anything while a lease confirmation is out) returns false.
    func stepInline(_ messages: [EtcdRaft.Message]) throws(MemberError) -> Bool {
        guard started, !stopped, leaseConfirmation == nil, messages.allSatisfy(isInlineTraffic) else { return false }
        for message in messages { member.step(message) }
        try runCycles()
        publishStatus(withProgress: false)
        return true
    }

    private func isInlineTraffic(_ message: EtcdRaft.Message) -> Bool {
        switch message.type {
        case .heartbeat:
            return message.term == member.term && !member.isLeader
        case .append:
            return message.term == member.term && !member.isLeader && message.entries.isEmpty
        case .heartbeatResponse, .appendResponse:
            return message.term == member.term && member.isLeader
        case .readIndexResponse:
            return message.term == member.term
        case .readIndex:
            // Forwarded reads carry no term (see `Raft.send`).
            return message.term == 0
        default:
            return false
        }
    }

    /// Asks again for the read indexes that went unanswered too long (see `readRequestedAt`).
    private func retryUnansweredReads() {
        guard !readRequestedAt.isEmpty else { return }
        let now = ContinuousClock.now
        for (context, requested) in readRequestedAt where requested.duration(to: now) >= Self.readIndexRetryInterval {
            readRequestedAt[context] = now
            try? member.readIndex(context: Self.bytes(of: context))
        }
    }

    private func requestReadIndex(for reads: [UInt64]) {
        nextReadContext += 1
        let context = nextReadContext
        do {
            try member.readIndex(context: Self.bytes(of: context))
            readsAwaitingIndex[context] = reads
            readRequestedAt[context] = .now
        } catch {
            pending.completeReads(reads, with: .failure(EtcdError.noLeader))
        }
    }

    private func runCycles() throws(MemberError) {
        let applier = self.applier
        let term = member.term
        var membershipChanged = false
        while let cycle = try member.runCycle(
            send: configuration.sendToPeers,
            restore: { (snapshot) throws(MemberError) in
                try restoreSnapshot(snapshot)
                membershipChanged = true
            },
            apply: { (entries) throws(ReplicaError) in
                if let own = entries.last(where: { $0.type == .normal && $0.data.isEmpty && $0.term == term }) {
                    ownTermEntry = (own.index, term)
                    applier.wakeLoop(whenApplied: own.index)
                }
                // Raft must know whether a membership change was applied before its next Ready
                // (etcd's followers likewise wait for apply when a Ready holds one).
                guard entries.contains(where: { $0.type == .confChange }) else {
                    applier.enqueue(entries)
                    return []
                }
                membershipChanged = true
                do {
                    return try applier.applyNow(entries)
                } catch {
                    throw .storage("\(error)")
                }
            }
        ) {
            if membershipChanged {
                membershipChanged = false
                configuration.membershipChanged(replica.withReplica { $0.membership })
            }
            for readState in cycle.readStates {
                if let context = Self.integer(of: readState.requestContext), leaseConfirmation?.context == context {
                    revokeConfirmedLeases()
                    continue
                }
                guard let context = Self.integer(of: readState.requestContext),
                    let reads = readsAwaitingIndex.removeValue(forKey: context)
                else { continue }
                readRequestedAt[context] = nil
                applier.releaseReads(reads, whenApplied: readState.index)
            }
            if let softState = cycle.softState {
                logger.info("raft state changed", metadata: ["role": "\(softState.role)", "leader": "\(softState.leader)"])
                if softState.role != .leader {
                    // Only the leader tracks expiry; a deposed one forgets its deadlines at once.
                    replica.withReplica { $0.lessor.demote() }
                    leaseConfirmation = nil
                    lastLeaseCheck = nil
                }
                if softState.leader == .none {
                    // Read requests sent to a leader that is gone get no answer; fail them now
                    // rather than at their deadline.
                    pending.completeReads(readsAwaitingIndex.values.flatMap { $0 }, with: .failure(EtcdError.leaderChanged))
                    readsAwaitingIndex.removeAll()
                    readRequestedAt.removeAll()
                }
            }
            try takeApplyReports()
        }
    }

    /// Replaces the backend with the image that came with the leader's snapshot (etcd's
    /// `applySnapshot`), once every entry before it is applied. Raft has saved the snapshot
    /// already; if the member stops before the install completes, the restart installs the image
    /// it finds (see `EtcdServer`).
    private func restoreSnapshot(_ snapshot: Snapshot) throws(MemberError) {
        let index = snapshot.metadata.index
        guard let install = configuration.installSnapshot, let imagePath = receivedImages.removeValue(forKey: index) else {
            throw .inconsistent("Raft handed over a snapshot at index \(index) with no backend image to install")
        }
        let replica = self.replica
        let reopen = configuration.reopenCheckpointer
        let applied: UInt64
        do {
            // The install swaps the database file: the applier's checkpointer connection is
            // closed first.
            applied = try applier.restore {
                let applied = try install(imagePath, index, replica)
                return (applied, try reopen())
            }
        } catch {
            throw .backend("installing the leader's snapshot at index \(index): \(error)")
        }
        logger.info("restored the backend from the leader's snapshot", metadata: [
            "snapshot_index": "\(index)", "applied_index": "\(applied)",
        ])
    }

    // MARK: Leases

    private func promoteLessor() {
        let extend = configuration.electionTimeout
        let promoted = replica.withReplica { replica -> Bool in
            guard !replica.lessor.isPrimary else { return false }
            replica.lessor.promote(now: replica.now, extend: extend)
            return true
        }
        if promoted {
            lastLeaseCheck = nil
            logger.info("lessor promoted", metadata: ["term": "\(member.term)", "extend": "\(extend)"])
        }
    }

    /// The leader's lease work each tick: after a stall, extend every lease and forget any
    /// unconfirmed revocations; hand expired leases to a leadership confirmation (a ReadIndex
    /// round, so a leader that was stalled and deposed meanwhile revokes nothing, etcd issues
    /// #15247 and #12528); propose due checkpoints.
    private func leaseDuties() {
        guard member.isLeader else { return }
        let grace = configuration.electionTimeout
        let limit = configuration.leaseRevocationsPerTick
        let awaitingConfirmation = leaseConfirmation != nil
        let previousCheck = lastLeaseCheck
        // The replica may be busy (an apply, a long read): the tick's lease work is skipped
        // rather than waited for, so that a Raft loop waiting here does not hold back its
        // heartbeats behind a long apply. But readers can keep it busy without a pause under a
        // heavy read load, so after `maxSkippedLeaseChecks` ticks in a row the loop waits if a
        // read holds it (one read is short): leases must neither miss their expiry nor a busy
        // member count as stalled. A gap longer than an election timeout is a stall (a long
        // fsync or apply, a paused process): keepalives may have been stuck behind it too.
        let duties = { (replica: Replica) -> (MonotonicTime, Int?, [LeaseID], [(id: LeaseID, remainingTTL: Int64)]) in
            let now = replica.now
            guard replica.lessor.isPrimary else { return (now, nil, [], []) }
            var extended: Int?
            if let previousCheck, previousCheck.duration(to: now) > grace {
                extended = replica.lessor.extendAfterStall(now: now, grace: grace)
            }
            let expired = awaitingConfirmation ? [] : replica.lessor.takeExpired(now: now, limit: limit)
            return (now, extended, expired, replica.lessor.takeDueCheckpoints(now: now, limit: 1_000))
        }
        let outcome =
            skippedLeaseChecks >= Self.maxSkippedLeaseChecks
            ? replica.withReplicaUnlessApplying(duties) : replica.withReplicaIfAvailable(duties)
        guard let (now, extended, expired, checkpoints) = outcome else {
            skippedLeaseChecks += 1
            return
        }
        skippedLeaseChecks = 0
        lastLeaseCheck = now
        if let extended, let previousCheck {
            logger.warning(
                "leader stalled; leases extended before any expires",
                metadata: ["stalled": "\(previousCheck.duration(to: now))", "extended_leases": "\(extended)"]
            )
            // A confirmation asked for before the stall proves nothing about now.
            leaseConfirmation = nil
        }
        if !expired.isEmpty {
            nextReadContext += 1
            do {
                try member.readIndex(context: Self.bytes(of: nextReadContext))
                leaseConfirmation = (nextReadContext, member.term, expired)
            } catch {
                logger.debug("lease revocation waits: leadership cannot be confirmed", metadata: ["error": "\(error)"])
            }
        }
        if !checkpoints.isEmpty {
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.leaseCheckpoint.checkpoints = checkpoints.map { checkpoint in
                var proto = Etcdserverpb_LeaseCheckpoint()
                proto.id = checkpoint.id.rawValue
                proto.remainingTtl = checkpoint.remainingTTL
                return proto
            }
            proposeInternal(entry)
        }
    }

    /// Leadership was confirmed after the leases were found expired: propose the revocation of
    /// each that is still expired (a keepalive cannot revive an expired lease, but a stall's
    /// extension can).
    private func revokeConfirmedLeases() {
        guard let confirmation = leaseConfirmation else { return }
        leaseConfirmation = nil
        guard member.isLeader, member.term == confirmation.term else { return }
        // As `leaseDuties`: waits behind a read, not behind an apply; leases not revoked now
        // are handed out again after the lessor's retry interval.
        guard
            let stillExpired = replica.withReplicaUnlessApplying({ replica in
                confirmation.leases.filter { replica.lessor.isExpired($0, now: replica.now) }
            })
        else { return }
        for lease in stillExpired {
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.leaseRevoke.id = lease.rawValue
            proposeInternal(entry)
        }
        if !stillExpired.isEmpty {
            logger.debug("revoking expired leases", metadata: ["count": "\(stillExpired.count)"])
        }
    }

    /// etcd's start-up entries: this member's name and client URLs (every start, so that a
    /// change of flags reaches the membership), and, from the leader, the cluster version when
    /// none is recorded yet. A fresh single member is then at index 4, as etcd's is.
    private func publishMember() {
        guard let local = configuration.localMember else {
            if !publication.done {
                publication.done = true
                configuration.published()
            }
            return
        }
        var attributes = Etcdserverpb_InternalRaftRequest()
        attributes.header.id = UInt64.random(in: 1 ... .max)
        attributes.clusterMemberAttrSet.memberID = local.id.rawValue
        attributes.clusterMemberAttrSet.memberAttributes.name = local.name
        attributes.clusterMemberAttrSet.memberAttributes.clientUrls = local.clientURLs
        applier.await(requestID: attributes.header.id)
        publication.lastAttempt = .now
        proposeInternal(attributes)
        recordClusterVersion()
    }

    /// The leader records the cluster version when none (or another) is recorded.
    private func recordClusterVersion() {
        let recorded = replica.withReplica { $0.clusterVersion }
        guard member.isLeader, recorded != configuration.clusterVersion, versionProposedInTerm != member.term else { return }
        versionProposedInTerm = member.term
        var version = Etcdserverpb_InternalRaftRequest()
        version.clusterVersionSet.ver = configuration.clusterVersion
        proposeInternal(version)
    }

    /// Until this member's attributes are applied, proposes them whenever a leader is known,
    /// again after every election timeout without success (etcd retries its publish likewise).
    private func publishDuties() {
        guard !publication.done, member.leader != .none else { return }
        if let last = publication.lastAttempt, last.duration(to: .now) < configuration.electionTimeout { return }
        publishMember()
    }

    /// Proposes an entry of the member's own (request ID 0, which no client request has, so its
    /// result answers nobody).
    private func proposeInternal(_ entry: Etcdserverpb_InternalRaftRequest) {
        do {
            try member.propose([try entry.serializedBytes()])
        } catch {
            logger.debug("internal proposal dropped", metadata: ["error": "\(error)"])
        }
    }

    /// Publishes what request handlers show. The members' progress (for promotions) costs a
    /// full Raft status, so it is refreshed once per tick rather than on every cycle.
    private func publishStatus(withProgress: Bool = true) {
        status.publish(
            term: member.term, leader: member.leader.rawValue, committedIndex: member.committedIndex)
        guard withProgress else { return }
        if member.isLeader && !member.isSoleVoter {
            status.publishProgress(member.matchIndexes)
        } else {
            status.publishProgress([:])
        }
        status.publishLearner(member.isLearner)
    }

    static func bytes(of value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    static func integer(of bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
    }
}
