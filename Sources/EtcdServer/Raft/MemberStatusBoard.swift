import Synchronization

/// The Raft state that request handlers show in responses (header term, Status RPC), published
/// by the Raft loop after each cycle so that handlers never wait for the loop to read it.
final class MemberStatusBoard: Sendable {
    private let termValue = Atomic<UInt64>(0)
    private let leaderValue = Atomic<UInt64>(0)
    private let committedValue = Atomic<UInt64>(0)
    private let appliedValue = Atomic<UInt64>(0)

    var term: UInt64 { termValue.load(ordering: .relaxed) }
    /// The leader's member ID, 0 when none is known.
    var leader: UInt64 { leaderValue.load(ordering: .relaxed) }
    /// Raft's commit index (etcd's `raft_index` in Status). The applier may publish an applied
    /// index before the loop publishes the commit that covers it, so it is never shown below it.
    var committedIndex: UInt64 { max(committedValue.load(ordering: .relaxed), appliedIndex) }
    var appliedIndex: UInt64 { appliedValue.load(ordering: .relaxed) }

    private let leaderChangeCount = Atomic<UInt64>(0)
    /// How many times this member saw a new leader (etcd's `etcd_server_leader_changes_seen_total`).
    var leaderChanges: UInt64 { leaderChangeCount.load(ordering: .relaxed) }

    private let progressValue = Mutex<[UInt64: UInt64]>([:])
    private let isLearnerValue = Atomic<Bool>(false)

    /// From the Raft loop after each cycle.
    func publish(term: UInt64, leader: UInt64, committedIndex: UInt64) {
        termValue.store(term, ordering: .relaxed)
        let previousLeader = leaderValue.exchange(leader, ordering: .relaxed)
        // As etcd counts them: each time a leader is known that differs from the last one seen.
        if leader != 0 && leader != previousLeader { leaderChangeCount.add(1, ordering: .relaxed) }
        committedValue.store(committedIndex, ordering: .relaxed)
    }

    /// From the applier, before the requests of the entries it applied are answered (so that a
    /// client that got its answer sees the entry applied in Status).
    func publishApplied(_ index: UInt64) {
        appliedValue.store(index, ordering: .relaxed)
    }

    /// On the leader, how far each member's log matches the leader's (Raft's progress), for
    /// the learner-readiness check of a promotion; empty elsewhere.
    var matchIndexes: [UInt64: UInt64] { progressValue.withLock { $0 } }

    func publishProgress(_ match: [UInt64: UInt64]) {
        progressValue.withLock { if $0 != match { $0 = match } }
    }

    private let databaseSizeValue = Atomic<Int64>(0)

    /// The backend's size in bytes after its last commit (what the space quota is checked
    /// against, as etcd checks its bbolt file's size, without a query per request).
    var databaseSize: Int64 { databaseSizeValue.load(ordering: .relaxed) }

    func publishDatabaseSize(_ bytes: Int64) { databaseSizeValue.store(bytes, ordering: .relaxed) }

    /// Whether this member is a learner (Status's `isLearner`).
    var isLearner: Bool { isLearnerValue.load(ordering: .relaxed) }

    func publishLearner(_ isLearner: Bool) { isLearnerValue.store(isLearner, ordering: .relaxed) }
}
