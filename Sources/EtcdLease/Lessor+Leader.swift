/// The leader's side of the lessor: expiry, renewals and checkpoints. None of it is replicated;
/// what it decides reaches the other members as proposals (revocations, checkpoints).
extension Lessor {
    /// The answer to a keepalive.
    public enum RenewOutcome: Hashable, Sendable {
        /// Renewed for `ttl` seconds from now. `clearsCheckpoint`: the lease carries a
        /// checkpointed remainder, which the caller must clear through Raft (a checkpoint of 0)
        /// so that a later promotion does not cut the renewed lease short, as etcd does.
        case renewed(ttl: Int64, clearsCheckpoint: Bool)
        /// No such lease: the keepalive answers TTL 0.
        case notFound
        /// The lease has expired and awaits its revocation; it cannot be renewed (etcd waits for
        /// the revocation and then answers "not found").
        case expired
        /// This member does not manage expiry; only the leader accepts keepalives.
        case notPrimary
    }

    /// Makes this member the primary (it leads and has applied everything of earlier terms):
    /// every lease expires `extend` (the election timeout) plus its remaining TTL from now, so
    /// that clients whose keepalives went to the old leader have time to find this one. With
    /// 1,000 leases or more, expiries that would bunch up beyond three quarters of the revoke rate
    /// in any second are spread out, as etcd does.
    public func promote(now: MonotonicTime, extend: Duration) {
        setPrimary(true)
        for id in leases.keys {
            refresh(id, now: now, extend: extend)
            scheduleCheckpoint(id, now: now)
        }
        guard leases.count >= Self.revokeRatePerSecond else { return }
        spreadExpiries(now: now, extend: extend)
    }

    private func refresh(_ id: LeaseID, now: MonotonicTime, extend: Duration) {
        guard let lease = leases[id] else { return }
        setExpiry(id, now + extend + .seconds(lease.effectiveTTL))
    }

    /// etcd's pile-up avoidance: walk the leases by expiry in one-second windows; past the target
    /// count in a window, each further lease is delayed in proportion to the excess.
    private func spreadExpiries(now: MonotonicTime, extend: Duration) {
        let ordered = leases.compactMap { id, lease in lease.expiry.map { (id: id, expiry: $0) } }
            .sorted { ($0.expiry, $0.id) < ($1.expiry, $1.id) }
        guard let first = ordered.first else { return }
        let targetPerSecond = (3 * Self.revokeRatePerSecond) / 4
        var baseWindow = now.duration(to: first.expiry)
        var nextWindow = baseWindow + .seconds(1)
        var expires = 0
        for lease in ordered {
            let remaining = now.duration(to: lease.expiry)
            if remaining > nextWindow {
                baseWindow = remaining
                nextWindow = baseWindow + .seconds(1)
                expires = 1
                continue
            }
            expires += 1
            if expires <= targetPerSecond { continue }
            let delay = Duration.seconds(1) * (Double(expires) / Double(targetPerSecond)) - (remaining - baseWindow)
            nextWindow = baseWindow + delay
            refresh(lease.id, now: now, extend: delay + extend)
            scheduleCheckpoint(lease.id, now: now)
        }
    }

    /// Stops managing expiry (leadership lost): every lease lives "forever" here until this
    /// member leads again.
    public func demote() {
        setPrimary(false)
        clearDeadlines()
    }

    /// A keepalive: restarts the lease's full TTL from `now`.
    public func renew(_ id: LeaseID, now: MonotonicTime) -> RenewOutcome {
        guard isPrimary else { return .notPrimary }
        guard let lease = leases[id] else { return .notFound }
        if let expiry = lease.expiry, expiry <= now { return .expired }
        let clearsCheckpoint = configuration.checkpointInterval != nil && lease.remainingTTL > 0
        setExpiry(id, now + .seconds(lease.ttl))
        return .renewed(ttl: lease.ttl, clearsCheckpoint: clearsCheckpoint)
    }

    /// Whether the lease exists and has expired by `now` on this (primary) member.
    public func isExpired(_ id: LeaseID, now: MonotonicTime) -> Bool {
        guard isPrimary, let expiry = leases[id]?.expiry else { return false }
        return expiry <= now
    }

    /// Up to `limit` leases that have expired by `now`, for the leader to revoke. Each is handed
    /// out again only after the retry interval, should its revocation not have been applied by
    /// then (lost with a leader change, say).
    public func takeExpired(now: MonotonicTime, limit: Int) -> [LeaseID] {
        guard isPrimary else { return [] }
        var expired: [LeaseID] = []
        while expired.count < limit, let id = popDueExpiry(now: now) {
            guard let expiry = leases[id]?.expiry else { continue }
            if expiry <= now {
                expired.append(id)
                pushExpiryCheck(id, at: now + configuration.expiredRetryInterval)
            } else {
                pushExpiryCheck(id, at: expiry)
            }
        }
        return expired
    }

    /// After the leader could not serve for `stalled` (a long fsync, CPU starvation, a paused
    /// process), keepalives sent meanwhile have not been seen yet: every lease gets at least
    /// `grace` from `now` so they can land before anything is revoked. Returns how many leases
    /// were extended.
    @discardableResult
    public func extendAfterStall(now: MonotonicTime, grace: Duration) -> Int {
        guard isPrimary else { return 0 }
        let floor = now + grace
        var extended = 0
        for (id, lease) in leases {
            guard let expiry = lease.expiry, expiry < floor else { continue }
            setExpiry(id, floor)
            extended += 1
        }
        return extended
    }

    /// Up to `limit` checkpoints that are due: each lease's whole seconds left (rounded up), for
    /// leases that have used part of their TTL and have not expired.
    public func takeDueCheckpoints(now: MonotonicTime, limit: Int) -> [(id: LeaseID, remainingTTL: Int64)] {
        guard isPrimary else { return [] }
        var due: [(id: LeaseID, remainingTTL: Int64)] = []
        while due.count < limit, let id = popDueCheckpoint(now: now) {
            guard let lease = leases[id], let expiry = lease.expiry, now < expiry else { continue }
            let left = now.duration(to: expiry).nanoseconds
            let remaining = (left + 999_999_999) / 1_000_000_000
            if remaining >= lease.ttl { continue }
            due.append((id, remaining))
        }
        return due
    }
}
