import HeapModule

/// What the backend keeps of a lease (etcd's `leasepb.Lease`): its ID, granted TTL and the last
/// checkpointed remaining TTL (0 when none). Expiry times are not kept: they belong to the
/// leader's clock and are rebuilt when a member becomes leader.
public struct PersistedLease: Hashable, Sendable {
    public var id: LeaseID
    public var ttl: Int64
    public var remainingTTL: Int64

    public init(id: LeaseID, ttl: Int64, remainingTTL: Int64) {
        self.id = id
        self.ttl = ttl
        self.remainingTTL = remainingTTL
    }
}

/// What `LeaseTimeToLive` reports about one lease.
public struct LeaseStatus: Hashable, Sendable {
    public var id: LeaseID
    /// Whole seconds left, truncated as etcd truncates them (`int64(Remaining().Seconds())`).
    public var remainingSeconds: Int64
    public var grantedTTL: Int64
    /// The attached keys, in byte order.
    public var keys: [[UInt8]]
}

/// etcd's lessor, without I/O, threads or a clock: the leases of one member, the keys attached to
/// them, and, on the leader (the *primary*), when each expires.
///
/// Two kinds of input drive it. Applied Raft entries (grant, revoke, checkpoint, and the puts and
/// deletes that attach and detach keys) change the state every member agrees on: which leases
/// exist, their TTLs, their checkpointed remaining TTLs, their keys. The leader's own calls
/// (``promote(now:extend:)``, ``renew(_:now:)``, ``takeExpired(now:limit:)``...) handle expiry,
/// which only the leader tracks: followers hold every lease "forever", as etcd's do, so that a
/// member that was not leader never expires anything.
///
/// Expiry and checkpoint deadlines sit in heaps with lazy deletion: a renewal pushes a new
/// deadline and leaves the old one to be dropped when it surfaces, so a renewal costs O(log n)
/// and never searches. The heaps are rebuilt when stale entries outnumber live ones.
///
/// A final class rather than a struct: the replica's KV applier and the replica share one lessor
/// (puts attach keys while the replica applies lease entries), under the replica's lock, as
/// ``MVCCStore`` is shared.
public final class Lessor {
    public struct Configuration: Sendable {
        /// Shorter TTLs are raised to this; etcd derives it from the election timeout
        /// (`ceil(1.5 × election timeout)` in seconds), so a lease outlives a leader election.
        public var minTTLSeconds: Int64
        /// How often the leader records a long lease's remaining TTL through Raft; nil turns
        /// checkpoints off (etcd's default; ours keeps them on, at etcd's 5 minutes).
        public var checkpointInterval: Duration?
        /// How long after handing out an expired lease for revocation it is handed out again if it
        /// still exists (etcd: the request timeout).
        public var expiredRetryInterval: Duration

        public init(minTTLSeconds: Int64, checkpointInterval: Duration? = .seconds(300), expiredRetryInterval: Duration = .seconds(7)) {
            self.minTTLSeconds = minTTLSeconds
            self.checkpointInterval = checkpointInterval
            self.expiredRetryInterval = expiredRetryInterval
        }

        /// etcd's minimum TTL for an election timeout: 1.5 election timeouts, rounded up to seconds.
        public static func minTTLSeconds(electionTimeout: Duration) -> Int64 {
            let nanoseconds = electionTimeout.nanoseconds / 2 * 3
            return max(1, (nanoseconds + 999_999_999) / 1_000_000_000)
        }
    }

    /// etcd's `MaxLeaseTTL`: larger grants fail with "too large lease TTL".
    public static let maxTTLSeconds: Int64 = 9_000_000_000
    /// etcd's `leaseRevokeRate`: the most leases a leader revokes per second; promotion spreads
    /// out expiries that would exceed three quarters of it.
    public static let revokeRatePerSecond = 1_000

    struct Lease {
        var ttl: Int64
        /// The last checkpointed remaining TTL, 0 when unset (then the full TTL counts).
        var remainingTTL: Int64
        /// When the lease expires on the leader's clock; nil ("forever") on other members.
        var expiry: MonotonicTime?
        /// The deadline of this lease's one valid entry in the expiry heap.
        var nextExpiryCheck: MonotonicTime?
        /// The deadline of this lease's one valid entry in the checkpoint heap.
        var nextCheckpoint: MonotonicTime?
        var keys: Set<[UInt8]> = []

        /// What a promotion starts the lease from: the checkpointed remainder if any (etcd's
        /// `RemainingTTL()`).
        var effectiveTTL: Int64 { remainingTTL > 0 ? remainingTTL : ttl }
    }

    struct Deadline: Comparable {
        var time: MonotonicTime
        var id: LeaseID

        static func < (lhs: Deadline, rhs: Deadline) -> Bool {
            (lhs.time, lhs.id) < (rhs.time, rhs.id)
        }
    }

    public let configuration: Configuration
    private(set) var leases: [LeaseID: Lease] = [:]
    private var leaseOfKey: [[UInt8]: LeaseID] = [:]
    private var expiryQueue = Heap<Deadline>()
    private var checkpointQueue = Heap<Deadline>()
    /// Whether this member manages expiry (it leads and has promoted its lessor).
    public private(set) var isPrimary = false

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    // MARK: Recovery

    /// Replaces everything with what the backend holds: the leases and the live keys' leases.
    /// Every lease starts "forever" and non-primary; a leader promotes again. Attachments to a
    /// lease that does not exist are returned (etcd logs and drops them too).
    @discardableResult
    public func restore(leases persisted: [PersistedLease], attachments: some Sequence<([UInt8], LeaseID)>)
        -> [([UInt8], LeaseID)]
    {
        leases.removeAll(keepingCapacity: true)
        leaseOfKey.removeAll(keepingCapacity: true)
        expiryQueue = Heap()
        checkpointQueue = Heap()
        isPrimary = false
        for lease in persisted {
            leases[lease.id] = Lease(
                ttl: max(lease.ttl, configuration.minTTLSeconds),
                remainingTTL: lease.remainingTTL
            )
        }
        var orphans: [([UInt8], LeaseID)] = []
        for (key, id) in attachments where id != .none {
            if leases[id] == nil {
                orphans.append((key, id))
            } else {
                attach(key, to: id)
            }
        }
        return orphans
    }

    // MARK: Applied entries (the same on every member)

    /// Whether a lease with this ID exists (expired ones that are not revoked yet included).
    public func contains(_ id: LeaseID) -> Bool { leases[id] != nil }

    public var count: Int { leases.count }

    /// Grants a lease and returns its TTL, raised to the minimum. On the primary it starts
    /// counting down at `now`.
    public func grant(_ id: LeaseID, ttl: Int64, now: MonotonicTime) throws(LeaseError) -> Int64 {
        if id == .none { throw .notFound }
        if ttl > Self.maxTTLSeconds { throw .ttlTooLarge }
        if leases[id] != nil { throw .exists }
        let granted = max(ttl, configuration.minTTLSeconds)
        leases[id] = Lease(ttl: granted, remainingTTL: 0)
        if isPrimary {
            setExpiry(id, now + .seconds(granted))
            scheduleCheckpoint(id, now: now)
        }
        return granted
    }

    /// The keys attached to a lease, in byte order (the order a revocation deletes them in, so
    /// every member writes the same revision), or nil if there is no such lease.
    public func attachedKeys(_ id: LeaseID) -> [[UInt8]]? {
        guard let lease = leases[id] else { return nil }
        return lease.keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Forgets a revoked lease (its keys have been deleted; any still attached are detached).
    public func remove(_ id: LeaseID) {
        guard let lease = leases.removeValue(forKey: id) else { return }
        for key in lease.keys where leaseOfKey[key] == id { leaseOfKey[key] = nil }
    }

    /// Records a checkpointed remaining TTL (0 clears it). Expiry is untouched: the remainder
    /// only matters when a member is promoted. Unknown leases are ignored, as in etcd.
    public func checkpoint(_ id: LeaseID, remainingTTL: Int64, now: MonotonicTime) {
        guard leases[id] != nil else { return }
        leases[id]?.remainingTTL = max(0, remainingTTL)
        if isPrimary { scheduleCheckpoint(id, now: now) }
    }

    /// The persisted form of a lease, for the backend after a grant or checkpoint.
    public func persisted(_ id: LeaseID) -> PersistedLease? {
        leases[id].map { PersistedLease(id: id, ttl: $0.ttl, remainingTTL: $0.remainingTTL) }
    }

    /// A key was put with `lease` (`.none` for no lease): it leaves its previous lease, if any.
    /// The lease must exist (the applier checked).
    public func recordPut(_ key: [UInt8], lease: LeaseID) {
        let previous = leaseOfKey[key] ?? .none
        guard previous != lease else { return }
        if previous != .none { detach(key, from: previous) }
        if lease != .none {
            precondition(leases[lease] != nil, "lessor: a put attached a key to lease \(lease), which does not exist")
            attach(key, to: lease)
        }
    }

    /// A key was deleted: it leaves its lease.
    public func recordDelete(_ key: [UInt8]) {
        guard let previous = leaseOfKey[key] else { return }
        detach(key, from: previous)
    }

    /// The lease a key is attached to, `.none` for none.
    public func lease(of key: [UInt8]) -> LeaseID { leaseOfKey[key] ?? .none }

    private func attach(_ key: [UInt8], to id: LeaseID) {
        leases[id]?.keys.insert(key)
        leaseOfKey[key] = id
    }

    private func detach(_ key: [UInt8], from id: LeaseID) {
        leases[id]?.keys.remove(key)
        leaseOfKey[key] = nil
    }

    // MARK: Reads

    /// What `LeaseTimeToLive` reports, or nil for an unknown lease.
    public func status(_ id: LeaseID, now: MonotonicTime, includeKeys: Bool) -> LeaseStatus? {
        guard let lease = leases[id] else { return nil }
        return LeaseStatus(
            id: id,
            remainingSeconds: Self.wholeSeconds(remaining(lease, now: now)),
            grantedTTL: lease.ttl,
            keys: includeKeys ? (attachedKeys(id) ?? []) : []
        )
    }

    /// Every lease, soonest expiry first (etcd's `Leases()` order), ties by ID.
    public func leasesByExpiry() -> [LeaseID] {
        leases.map { (id: $0.key, expiry: $0.value.expiry) }
            .sorted { lhs, rhs in
                switch (lhs.expiry, rhs.expiry) {
                case (let l?, let r?) where l != r: return l < r
                case (.some, nil): return true
                case (nil, .some): return false
                default: return lhs.id < rhs.id
                }
            }
            .map(\.id)
    }

    /// Time left; `Int64.max` nanoseconds for a lease without expiry, as etcd's `Remaining()`.
    func remaining(_ lease: Lease, now: MonotonicTime) -> Duration {
        guard let expiry = lease.expiry else { return .nanoseconds(Int64.max) }
        return now.duration(to: expiry)
    }

    static func wholeSeconds(_ duration: Duration) -> Int64 {
        duration.nanoseconds / 1_000_000_000
    }

    // MARK: Deadline bookkeeping

    func setExpiry(_ id: LeaseID, _ expiry: MonotonicTime?) {
        guard leases[id] != nil else { return }
        leases[id]?.expiry = expiry
        leases[id]?.nextExpiryCheck = expiry
        if let expiry { pushExpiryCheck(id, at: expiry) }
    }

    func pushExpiryCheck(_ id: LeaseID, at time: MonotonicTime) {
        leases[id]?.nextExpiryCheck = time
        expiryQueue.insert(Deadline(time: time, id: id))
        // Renewals leave stale entries behind; rebuild before they outnumber the leases.
        if expiryQueue.count > 2 * leases.count + 1_024 {
            expiryQueue = Heap(leases.compactMap { id, lease in lease.nextExpiryCheck.map { Deadline(time: $0, id: id) } })
        }
    }

    func scheduleCheckpoint(_ id: LeaseID, now: MonotonicTime) {
        guard let interval = configuration.checkpointInterval, let lease = leases[id] else { return }
        // Only leases that outlive an interval gain anything from a checkpoint (as etcd).
        guard Duration.seconds(lease.effectiveTTL) > interval else { return }
        let time = now + interval
        leases[id]?.nextCheckpoint = time
        checkpointQueue.insert(Deadline(time: time, id: id))
    }

    /// The next valid expiry deadline at or before `now`, removed from the heap.
    func popDueExpiry(now: MonotonicTime) -> LeaseID? {
        while let top = expiryQueue.min, top.time <= now {
            expiryQueue.removeMin()
            if leases[top.id]?.nextExpiryCheck == top.time { return top.id }
        }
        return nil
    }

    /// The next valid checkpoint deadline at or before `now`, removed from the heap.
    func popDueCheckpoint(now: MonotonicTime) -> LeaseID? {
        while let top = checkpointQueue.min, top.time <= now {
            checkpointQueue.removeMin()
            if leases[top.id]?.nextCheckpoint == top.time {
                leases[top.id]?.nextCheckpoint = nil
                return top.id
            }
        }
        return nil
    }

    func clearDeadlines() {
        expiryQueue = Heap()
        checkpointQueue = Heap()
        for id in leases.keys {
            leases[id]?.expiry = nil
            leases[id]?.nextExpiryCheck = nil
            leases[id]?.nextCheckpoint = nil
        }
    }

    func setPrimary(_ primary: Bool) { isPrimary = primary }

    /// Entries in the expiry heap, stale ones included (for tests of the bound).
    var expiryQueueCount: Int { expiryQueue.count }
}
