public import EtcdAPI
public import EtcdAuth
import EtcdBackend
import EtcdCommon
public import EtcdLease
public import EtcdMVCC
public import EtcdRaft
public import Logging
public import SwiftProtobuf

/// What applying one log entry produced.
public enum ApplyResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case leaseGrant(Etcdserverpb_LeaseGrantResponse)
    case leaseRevoke(Etcdserverpb_LeaseRevokeResponse)
    case leaseCheckpoint(Etcdserverpb_LeaseCheckpointResponse)
    case alarm(Etcdserverpb_AlarmResponse)
    /// A member's published attributes or the cluster version, recorded (nobody waits on these
    /// but the member that proposed them).
    case membership
    /// A membership change applied: the membership after it (a refused change is a failure).
    case membershipChanged(ClusterMembership)
    /// An auth request's response (the Auth service's response message for it).
    case auth(any SwiftProtobuf.Message)
}

/// The result of one applied request, under the ID its proposer gave it (`header.id`), so that
/// the member that proposed it can answer its caller.
public struct AppliedRequest: Sendable {
    public var requestID: UInt64
    public var result: Result<ApplyResponse, ReplicaError>

    public init(requestID: UInt64, result: Result<ApplyResponse, ReplicaError>) {
        self.requestID = requestID
        self.result = result
    }
}

/// One member's state machine: committed Raft entries applied in index order to the MVCC store.
///
/// Each entry is applied exactly once across crashes: the index of the last applied entry
/// (etcd's consistent index) is written in the same backend transaction as the changes it covers,
/// and entries at or below the index the backend holds are skipped when Raft hands them out again
/// after a restart. Backend transactions span many entries (etcd's batched backend commits); the
/// owner commits them with ``commitBackend(durably:)`` on its own schedule, and must commit
/// durably before the Raft log behind ``appliedIndex`` may be released.
///
/// A backend failure is not survivable here: the entries are committed in Raft and cannot be
/// dropped, so ``apply(_:)`` rolls the open batch back and throws, and the owner must stop the
/// member; a restart replays the entries from the WAL.
///
/// Not `Sendable`: the server keeps it behind one lock (reads and applies share it).
public final class Replica {
    public let store: MVCCStore
    /// The leases, their keys and (on the leader) their expiry; changed by applied entries and,
    /// for expiry, by the leader's own calls under the same lock.
    public let lessor: Lessor
    private let leaseTable: LeaseTable
    /// The cluster's members, as applied membership entries left them (replicated state).
    public internal(set) var membership: ClusterMembership
    /// The cluster version the leader last recorded through Raft (etcd's `clusterVersionSet`).
    public private(set) var clusterVersion: String?
    let membershipTable: MembershipTable
    let alarmTable: AlarmTable
    /// The raised alarms, ordered by type then member (replicated state, see ``AlarmTable``).
    public internal(set) var alarms: [Etcdserverpb_AlarmMember]
    let authTable: AuthTable
    /// Users, roles and permissions, and whether auth is on (replicated state, see ``AuthTable``).
    public internal(set) var auth: AuthStore
    /// What request handlers see of ``auth`` without the replica's lock, and this member's
    /// simple tokens, assigned as Authenticate entries are applied (not replicated state: the
    /// owner keeps the board across backend swaps).
    public let authBoard: AuthBoard
    /// Membership entries that the membership refused when applied, by log index: Raft must not
    /// apply those to its configuration either (etcd applies them as a change of no node).
    private var refusedConfChanges: [UInt64] = []

    func recordRefusedConfChange(_ index: UInt64) { refusedConfChanges.append(index) }

    func takeRefusedConfChangeIndexes() -> Set<UInt64> {
        defer { refusedConfChanges.removeAll() }
        return Set(refusedConfChanges)
    }
    /// The leader's monotonic clock, read when an applied grant or checkpoint starts a deadline.
    private let clock: @Sendable () -> MonotonicTime
    private var applier: KVApplier
    let logger: Logger
    /// The last entry applied to the store, in the open batch or committed.
    public private(set) var appliedIndex: UInt64
    /// The term of the entry at ``appliedIndex``.
    public private(set) var appliedTerm: UInt64
    /// The last entry whose changes the backend has committed.
    public private(set) var committedIndex: UInt64
    /// Entries applied since the backend batch was opened.
    public private(set) var entriesInBatch = 0
    private var batchOpen = false

    static let appliedIndexMetaKey = "consistent_index"
    static let termMetaKey = "term"

    /// Opens the replica on `store`: reads the consistent index, and loads the leases and the
    /// keys attached to them from the backend. `leases` sets the minimum TTL and checkpoints;
    /// `clock` is the monotonic clock of the leader's deadlines.
    public init(
        store: MVCCStore,
        logger: Logger,
        leases: Lessor.Configuration = Lessor.Configuration(minTTLSeconds: 2),
        authBoard: AuthBoard = AuthBoard(),
        clock: @escaping @Sendable () -> MonotonicTime = Replica.processClock
    ) throws(ReplicaError) {
        self.store = store
        self.authBoard = authBoard
        self.logger = logger
        self.clock = clock
        lessor = Lessor(configuration: leases)
        applier = KVApplier(store: store, lessor: lessor)
        do {
            leaseTable = try LeaseTable(backend: store.backend)
            membershipTable = try MembershipTable(backend: store.backend)
            membership = try membershipTable.load()
            clusterVersion = try membershipTable.clusterVersion()
            alarmTable = try AlarmTable(backend: store.backend)
            alarms = try alarmTable.all()
            authTable = try AuthTable(backend: store.backend)
            auth = try authTable.load()
            authBoard.publish(auth)
        } catch {
            throw .storage("\(error)")
        }
        do {
            appliedIndex = UInt64(clamping: try store.meta(Self.appliedIndexMetaKey) ?? 0)
            appliedTerm = UInt64(clamping: try store.meta(Self.termMetaKey) ?? 0)
        } catch {
            throw ReplicaError(error)
        }
        committedIndex = appliedIndex
        try reloadLeases()
    }

    /// Rebuilds the lessor from the backend (at open, and after a batch was rolled back, which
    /// rebuilt the store from disk too). Leases start "forever"; a leader promotes them again.
    /// Rebuilds everything kept in memory beside the store from the backend (after a batch was
    /// rolled back, which rebuilt the store too).
    private func reloadAfterRollback() {
        try? reloadLeases()
        if let saved = try? membershipTable.load(maxLearners: membership.maxLearners) { membership = saved }
        clusterVersion = (try? membershipTable.clusterVersion()) ?? nil
        if let saved = try? alarmTable.all() { alarms = saved }
        if let saved = try? authTable.load() {
            auth = saved
            authBoard.publish(saved)
        }
        refusedConfChanges.removeAll()
    }

    private func reloadLeases() throws(ReplicaError) {
        let persisted: [PersistedLease]
        do {
            persisted = try leaseTable.all()
        } catch {
            throw .storage("\(error)")
        }
        let attachments = store.takeRestoredLeaseAttachments().map { ($0.0, LeaseID($0.1)) }
        let orphans = lessor.restore(leases: persisted, attachments: attachments)
        for (key, lease) in orphans.prefix(10) {
            logger.warning(
                "key attached to a lease that does not exist",
                metadata: ["lease_id": "\(lease)", "key_bytes": "\(key.count)"]
            )
        }
    }

    // MARK: Reads

    public func range(_ request: Etcdserverpb_RangeRequest) throws(ReplicaError) -> Etcdserverpb_RangeResponse {
        try applier.range(request, in: store)
    }

    /// A transaction with only reads in it; it changes nothing and needs no log entry.
    public func readOnlyTxn(_ request: Etcdserverpb_TxnRequest) throws(ReplicaError) -> Etcdserverpb_TxnResponse {
        precondition(KVApplier.isReadOnly(request), "readOnlyTxn was given a txn that writes")
        return try applier.txn(request)
    }

    public static func isReadOnly(_ request: Etcdserverpb_TxnRequest) -> Bool {
        KVApplier.isReadOnly(request)
    }

    // MARK: Applying

    /// Applies committed entries in index order, in the open backend batch (opening one if
    /// needed), and returns the result of every request among them. Entries the backend already
    /// holds (index at or below ``appliedIndex``) are skipped. Membership entries change
    /// ``membership`` (those it refuses are handed to the Raft member through
    /// ``takeRefusedConfChanges()``, so that Raft's configuration skips them too); Raft's empty
    /// entries only advance the index.
    ///
    /// Throws `.storage` if the backend fails: the open batch is rolled back (``appliedIndex``
    /// rewinds to ``committedIndex``) and the member must stop.
    public func apply(_ entries: some BidirectionalCollection<Entry>) throws(ReplicaError) -> [AppliedRequest] {
        var results: [AppliedRequest] = []
        guard let last = entries.last, last.index > appliedIndex else { return results }
        try openBatchIfNeeded()
        for entry in entries where entry.index > appliedIndex {
            precondition(
                entry.index == appliedIndex + 1,
                "apply: entry \(entry.index) follows applied index \(appliedIndex)"
            )
            if entry.type == .confChange {
                if let outcome = try applyConfChange(entry) { results.append(outcome) }
            } else if !entry.data.isEmpty {
                let request: Etcdserverpb_InternalRaftRequest
                do {
                    request = try InternalRequestCoding.decode(entry.data)
                } catch {
                    // The WAL checked the entry's CRC, so this is a request this build cannot
                    // read; skipping it would fork this member's state from the others'.
                    try fail("log entry \(entry.index) is not a request this member can decode: \(error)")
                }
                let result = apply(request, index: entry.index)
                if case .failure(.storage(let reason)) = result { try fail(reason) }
                results.append(AppliedRequest(requestID: request.header.id, result: result))
            }
            appliedIndex = entry.index
            appliedTerm = entry.term
            entriesInBatch += 1
        }
        do {
            try store.setMeta(Self.appliedIndexMetaKey, Int64(appliedIndex))
            try store.setMeta(Self.termMetaKey, Int64(appliedTerm))
        } catch {
            try fail("\(error)")
        }
        return results
    }

    /// Commits the open backend batch, if any. `durably` waits for the disk: required before the
    /// Raft log up to ``appliedIndex`` is released by a snapshot, and at shutdown. On failure the
    /// batch is rolled back and the member must stop.
    public func commitBackend(durably: Bool) throws(ReplicaError) {
        guard batchOpen else {
            if durably {
                // Earlier commits may not be on disk yet.
                do {
                    try store.backend.sync()
                } catch {
                    logger.critical("backend sync failed", metadata: ["reason": "\(error)"])
                    throw ReplicaError(.backend(error))
                }
            }
            return
        }
        batchOpen = false
        do {
            try store.commitBatch(durably: durably)
        } catch {
            // commitBatch has already rolled back and rebuilt memory from disk.
            appliedIndex = committedIndex
            entriesInBatch = 0
            reloadAfterRollback()
            logger.critical("backend commit failed", metadata: ["reason": "\(error)"])
            throw ReplicaError(error)
        }
        committedIndex = appliedIndex
        entriesInBatch = 0
    }

    /// Whether a backend batch is open (holding applied entries or compaction deletions) that
    /// the owner has yet to commit.
    public var hasOpenBatch: Bool { batchOpen }

    /// Deletes up to `limit` rows of compacted history in the open batch (opening one if
    /// needed); returns how many are still waiting. The owner calls this between applies, with
    /// pauses, so that a large compaction never stops the member for long (etcd deletes 1,000
    /// keys per batch with a 10 ms pause between them). A backend failure stops the member.
    public func compactStep(limit: Int) throws(ReplicaError) -> Int {
        guard store.pendingCompactionRowCount > 0 else { return 0 }
        try openBatchIfNeeded()
        do {
            try store.compactStep(limit: limit)
        } catch {
            try fail("compaction: \(error)")
        }
        return store.pendingCompactionRowCount
    }

    /// Turns a backend restored from a snapshot into the start of a new cluster (etcdutl's
    /// `snapshot restore`): the keys, their revisions and the leases stay; the old cluster's
    /// members, alarms and applied index go (with the meta values named in `forgetting`), so the
    /// new cluster's log applies from its first entry, its membership included. Committed durably.
    public func startNewCluster(forgetting metaNames: [String]) throws(ReplicaError) {
        try openBatchIfNeeded()
        do {
            try membershipTable.clear()
            try alarmTable.clear()
            for name in [Self.appliedIndexMetaKey, Self.termMetaKey] + metaNames {
                try store.removeMeta(name)
            }
        } catch {
            try fail("restoring a snapshot: \(error)")
        }
        try commitBackend(durably: true)
        membership = ClusterMembership(members: [])
        clusterVersion = nil
        alarms = []
        appliedIndex = 0
        appliedTerm = 0
        committedIndex = 0
    }

    /// One step of defragmentation (etcd's Defragment, done in place): up to `pages` free pages
    /// handed back to the file system in the open batch (opening one if needed), so that applies
    /// and reads go on between steps. Returns the free pages left. A database created before
    /// incremental release existed is rewritten whole instead, once, after committing the batch
    /// (reads and applies wait for that one rewrite). A backend failure stops the member.
    public func defragmentStep(pages: Int) throws(ReplicaError) -> Int64 {
        let incremental: Bool
        do {
            incremental = try store.backend.releasesPagesIncrementally
        } catch {
            throw ReplicaError(.backend(error))
        }
        guard incremental else {
            try commitBackend(durably: false)
            do {
                try store.backend.rewrite()
                return try store.backend.freePageCount
            } catch {
                try fail("defragmentation: \(error)")
            }
        }
        try openBatchIfNeeded()
        do {
            return try store.backend.releaseFreePages(limit: pages)
        } catch {
            try fail("defragmentation: \(error)")
        }
    }

    private func openBatchIfNeeded() throws(ReplicaError) {
        guard !batchOpen else { return }
        do {
            try store.beginBatch()
        } catch {
            throw ReplicaError(error)
        }
        batchOpen = true
    }

    private func fail(_ reason: String) throws(ReplicaError) -> Never {
        logger.critical(
            "backend failed while applying; rolling back to the last committed entry",
            metadata: ["reason": "\(reason)", "applied_index": "\(appliedIndex)", "committed_index": "\(committedIndex)"]
        )
        if batchOpen {
            store.abortBatch()
            batchOpen = false
            reloadAfterRollback()
        }
        appliedIndex = committedIndex
        appliedTerm = UInt64(clamping: (try? store.meta(Self.termMetaKey)) ?? 0)
        entriesInBatch = 0
        throw .storage(reason)
    }

    private func apply(_ request: Etcdserverpb_InternalRaftRequest, index: UInt64) -> Result<ApplyResponse, ReplicaError> {
        do throws(ReplicaError) {
            if let refusal = alarmRefusal(request) { return .failure(refusal) }
            try checkWritePermissions(request)
            if request.hasPut { return .success(.put(try applier.put(request.put))) }
            if request.hasDeleteRange { return .success(.deleteRange(try applier.deleteRange(request.deleteRange))) }
            if request.hasTxn { return .success(.txn(try applier.txn(request.txn))) }
            if request.hasCompaction { return .success(.compaction(try applier.compact(request.compaction))) }
            if request.hasLeaseGrant { return .success(.leaseGrant(try grant(request.leaseGrant))) }
            if request.hasLeaseRevoke { return .success(.leaseRevoke(try revoke(request.leaseRevoke))) }
            if request.hasLeaseCheckpoint { return .success(.leaseCheckpoint(try checkpoint(request.leaseCheckpoint))) }
            if request.hasAlarm { return .success(.alarm(try applyAlarm(request.alarm))) }
            if request.hasClusterMemberAttrSet {
                let attributes = request.clusterMemberAttrSet
                membership.publishAttributes(
                    of: MemberID(attributes.memberID), name: attributes.memberAttributes.name,
                    clientURLs: attributes.memberAttributes.clientUrls)
                try saveMembership()
                return .success(.membership)
            }
            if request.hasClusterVersionSet {
                clusterVersion = request.clusterVersionSet.ver
                do {
                    try membershipTable.saveClusterVersion(request.clusterVersionSet.ver)
                } catch {
                    throw .storage("\(error)")
                }
                return .success(.membership)
            }
            if let response = try applyAuth(request, index: index) { return .success(.auth(response)) }
            return .failure(.storage("log entry \(index) holds no request this member can apply"))
        } catch {
            return .failure(error)
        }
    }
}

// MARK: Lease entries

extension Replica {
    /// etcd's `applierV3backend.LeaseGrant`: the lease and its row, in the open batch.
    private func grant(_ request: Etcdserverpb_LeaseGrantRequest) throws(ReplicaError) -> Etcdserverpb_LeaseGrantResponse {
        let id = LeaseID(request.id)
        let ttl: Int64
        do {
            ttl = try lessor.grant(id, ttl: request.ttl, now: clock())
        } catch {
            throw ReplicaError(error)
        }
        try saveLease(id)
        var response = Etcdserverpb_LeaseGrantResponse()
        response.id = request.id
        response.ttl = ttl
        response.header.revision = store.currentRevision
        return response
    }

    /// etcd's `LeaseRevoke`: every attached key deleted in one write transaction (one revision,
    /// keys in byte order so that every member writes the same rows), then the lease and its row.
    private func revoke(_ request: Etcdserverpb_LeaseRevokeRequest) throws(ReplicaError) -> Etcdserverpb_LeaseRevokeResponse {
        let id = LeaseID(request.id)
        guard let keys = lessor.attachedKeys(id) else { throw .request(.leaseNotFound) }
        if !keys.isEmpty {
            try applier.inWriteTransaction { (txn) throws(ReplicaError) in
                for key in keys {
                    do throws(MVCCError) {
                        _ = try txn.deleteRange(.key(key))
                    } catch {
                        throw ReplicaError(error)
                    }
                }
            }
        }
        lessor.remove(id)
        do {
            try leaseTable.delete(id)
        } catch {
            throw .storage("\(error)")
        }
        var response = Etcdserverpb_LeaseRevokeResponse()
        response.header.revision = store.currentRevision
        return response
    }

    /// etcd's `LeaseCheckpoint` with persistence on: the remainders are recorded and saved;
    /// unknown leases are skipped.
    private func checkpoint(_ request: Etcdserverpb_LeaseCheckpointRequest) throws(ReplicaError)
        -> Etcdserverpb_LeaseCheckpointResponse
    {
        let now = clock()
        for checkpoint in request.checkpoints {
            let id = LeaseID(checkpoint.id)
            guard lessor.contains(id) else { continue }
            lessor.checkpoint(id, remainingTTL: checkpoint.remainingTtl, now: now)
            try saveLease(id)
        }
        var response = Etcdserverpb_LeaseCheckpointResponse()
        response.header.revision = store.currentRevision
        return response
    }

    private func saveLease(_ id: LeaseID) throws(ReplicaError) {
        guard let persisted = lessor.persisted(id) else { return }
        do {
            try leaseTable.save(persisted)
        } catch {
            throw .storage("\(error)")
        }
    }

    /// The leader's clock as this replica reads it.
    public var now: MonotonicTime { clock() }

    private static let clockOrigin = ContinuousClock.now

    /// The process's monotonic clock, time since the replica module first read it; the lessor
    /// itself never reads a clock.
    @Sendable public static func processClock() -> MonotonicTime {
        MonotonicTime(nanoseconds: clockOrigin.duration(to: .now).nanoseconds)
    }
}
