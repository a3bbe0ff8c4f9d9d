import EtcdAPI
import EtcdAuth
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdReplica
import Foundation
import GRPCCore
import Synchronization

/// etcd's Lease service. Grants and revocations are Raft entries; keepalives and time-to-live
/// are answered by the leader's lessor, which alone tracks expiry.
struct LeaseService: Etcdserverpb_Lease.SimpleServiceProtocol {
    let writer: RequestProposer
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    /// Where keepalives and time-to-live go on a member that does not lead.
    let forwarder: LeaderForwarder
    /// How long a keepalive waits for this member to become primary, or for an expired lease's
    /// revocation (etcd's request timeout).
    let requestTimeout: Duration
    /// How often such a wait looks again (one Raft tick).
    let pollInterval: Duration
    /// Leases whose revocation is being proposed: their keepalives wait for the outcome.
    let revokes = RevokesInFlight()
    /// Fires when the server stops: keepalive streams never end by themselves.
    let shutdown: ShutdownSignal
    /// Grants are refused once the backend is full (etcd's quota lease server).
    let quota: BackendQuota
    /// With auth on, every lease call needs a known user (etcd 3.5.28 on), and the keys attached
    /// to a lease guard what may be done with it.
    let authenticator: Authenticator

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseGrantResponse
    {
        try await quota.check(cost: QuotaCost.leaseGrant)
        _ = try await authenticator.requireUser()
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.leaseGrant = request
        // The leader picks an ID when the client does not, before proposing, so that every
        // member applies the same one (etcd uses its request ID generator, positive IDs only).
        if entry.leaseGrant.id == 0 { entry.leaseGrant.id = writer.newLeaseID() }
        guard case .leaseGrant(var response) = try await writer.propose(consume entry) else {
            preconditionFailure("a lease grant was answered with another kind of response")
        }
        header.fill(&response.header)
        return response
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseRevokeResponse
    {
        // Write permission on the attached keys is checked at apply, under this identity.
        var entry = try await authenticator.entry()
        entry.leaseRevoke = request
        // From here until the revocation is applied (or fails), a keepalive of this lease waits
        // for it rather than renewing a lease that is about to go: etcd makes renewals wait for
        // the applied index to reach the committed one for the same reason.
        revokes.begin(LeaseID(request.id))
        defer { revokes.end(LeaseID(request.id)) }
        guard case .leaseRevoke(var response) = try await writer.propose(consume entry) else {
            preconditionFailure("a lease revoke was answered with another kind of response")
        }
        header.fill(&response.header)
        return response
    }

    /// Answers each keepalive as it comes. One that cannot be answered at once (an expired lease
    /// awaiting its revocation, a renewal that must clear a checkpoint through Raft, a member not
    /// yet primary) is answered from a task of its own, so that it does not hold up the renewals
    /// behind it on the stream: etcd answers a stream's keepalives strictly in turn, so a burst of
    /// expired leases (up to a second each while revocations queue) can make the live leases that
    /// share their stream miss their deadlines too. Clients match answers by lease ID, not by
    /// order. Past `maxDeferredPerStream` such answers in flight, the stream waits for its own.
    ///
    /// When the server stops, the stream ends with UNAVAILABLE "etcdserver: server stopped": etcd
    /// closes its connections (after its grace period), which its clients see as UNAVAILABLE, and
    /// they then retry elsewhere.
    func leaseKeepAlive(
        request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>,
        response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>,
        context: ServerContext
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { race in
            race.addTask { try await answerKeepAlives(request: request, response: response) }
            race.addTask {
                await shutdown.wait()
                // Cancelled because the stream ended first: nothing to report.
                if !Task.isCancelled { throw EtcdError.stopped }
            }
            // The first to finish decides; leaving the group cancels the other.
            try await race.next()
            race.cancelAll()
        }
    }

    private func answerKeepAlives(
        request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>,
        response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>
    ) async throws {
        let deferred = DeferredAnswers()
        let identity = try await authenticator.requireUser()
        try await withThrowingDiscardingTaskGroup { group in
            for try await keepAlive in request {
                let id = LeaseID(keepAlive.id)
                // Keeping a lease alive keeps its keys: it needs write permission on them.
                if authenticator.isEnabled {
                    try replica.read { (replica) throws(ReplicaError) in
                        try replica.checkLeaseKeys(identity, lease: keepAlive.id, .write)
                    }
                }
                // The header is taken before the renewal, as etcd does, so that its revision is
                // never newer than the moment the lease was renewed.
                var answer = Etcdserverpb_LeaseKeepAliveResponse()
                answer.id = keepAlive.id
                header.fill(&answer.header)
                let revoking = revokes.contains(id)
                let (revision, outcome) = try replica.read { replica in
                    (replica.store.currentRevision, revoking ? nil : replica.lessor.renew(id, now: replica.now))
                }
                answer.header.revision = revision
                if case .renewed(let ttl, clearsCheckpoint: false)? = outcome {
                    answer.ttl = ttl
                    try await response.write(answer)
                } else if outcome == .notFound {
                    try await response.write(answer)
                } else if deferred.count.load(ordering: .relaxed) >= Self.maxDeferredPerStream {
                    answer.ttl = try await renew(id)
                    try await response.write(answer)
                } else {
                    // `renew` asks the lessor again: renewing twice in a row changes nothing, and
                    // it clears a checkpointed remainder or waits as the first answer said.
                    deferred.count.add(1, ordering: .relaxed)
                    group.addTask { [answer] in
                        defer { deferred.count.subtract(1, ordering: .relaxed) }
                        var answer = answer
                        answer.ttl = try await renew(id)
                        try await response.write(answer)
                    }
                }
            }
        }
    }

    /// Keepalives of one stream answered out of turn at once; beyond, the stream waits.
    static let maxDeferredPerStream = 1_000

    /// Revocations proposed and not yet answered, by lease (a count: two clients may revoke
    /// the same lease at once).
    final class RevokesInFlight: Sendable {
        private let counts = Mutex<[LeaseID: Int]>([:])

        func begin(_ id: LeaseID) { counts.withLock { $0[id, default: 0] += 1 } }

        func end(_ id: LeaseID) {
            counts.withLock { counts in
                let left = (counts[id] ?? 1) - 1
                counts[id] = left > 0 ? left : nil
            }
        }

        func contains(_ id: LeaseID) -> Bool { counts.withLock { $0[id] != nil } }
    }

    /// How many of a stream's keepalives are being answered out of turn.
    private final class DeferredAnswers: Sendable {
        let count = Atomic<Int>(0)
    }

    /// The TTL a keepalive answers: the granted TTL, or 0 for a lease that does not exist or has
    /// expired (once its revocation is applied, so that a client told "gone" never still sees its
    /// keys).
    private func renew(_ id: LeaseID) async throws -> Int64 {
        let deadline = ContinuousClock.now.advanced(by: requestTimeout)
        while true {
            if revokes.contains(id) {
                guard ContinuousClock.now < deadline else { throw EtcdError.timeout }
                try await Task.sleep(for: pollInterval)
                continue
            }
            let outcome = try replica.read { replica in replica.lessor.renew(id, now: replica.now) }
            switch outcome {
            case .renewed(let ttl, let clearsCheckpoint):
                if clearsCheckpoint { try await clearCheckpoint(id) }
                return ttl
            case .notFound:
                return 0
            case .notPrimary:
                // Only the leader's lessor renews; a follower passes the keepalive on, as etcd's
                // followers do. A leader not yet promoted waits for its promotion.
                if case .remote(let leader) = try forwarder.leader() {
                    return try await forwarder.keepAlive(id.rawValue, on: leader)
                }
                guard ContinuousClock.now < deadline else { throw EtcdError.noLeader }
                try await Task.sleep(for: pollInterval)
            case .expired:
                // The revocation the expiry check is proposing is on its way.
                guard ContinuousClock.now < deadline else {
                    throw EtcdError.timeout
                }
                try await Task.sleep(for: pollInterval)
            }
        }
    }

    /// A renewed lease must not keep an old checkpointed remainder, or a promotion would cut
    /// the renewed TTL short; the remainder is cleared through Raft, as etcd does.
    private func clearCheckpoint(_ id: LeaseID) async throws {
        var checkpoint = Etcdserverpb_LeaseCheckpoint()
        checkpoint.id = id.rawValue
        checkpoint.remainingTtl = 0
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.leaseCheckpoint.checkpoints = [checkpoint]
        _ = try await writer.propose(consume entry)
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        let identity = try await authenticator.requireUser()
        if request.keys && authenticator.isEnabled {
            // Listing the keys shows them: read permission on each (etcd 3.5.9 on).
            try replica.read { (replica) throws(ReplicaError) in
                try replica.checkLeaseKeys(identity, lease: request.id, .read)
            }
        }
        // Only the leader knows how long a lease has left; others ask it, as etcd's followers do.
        if case .remote(let leader) = try forwarder.leader() {
            var response = try await forwarder.timeToLive(request, on: leader)
            header.fill(&response.header)
            response.header.revision = try replica.read { $0.store.currentRevision }
            return response
        }
        // Everything committed before the request is applied first (etcd waits for its applied
        // index), so a lease just revoked is not reported alive.
        try await writer.waitForLinearizableRead()
        let status = try replica.read { replica in
            replica.lessor.status(LeaseID(request.id), now: replica.now, includeKeys: request.keys)
        }
        var response = Etcdserverpb_LeaseTimeToLiveResponse()
        response.id = request.id
        if let status {
            response.ttl = status.remainingSeconds
            response.grantedTtl = status.grantedTTL
            response.keys = status.keys.map { Data($0) }
        } else {
            // etcd answers an unknown lease with TTL -1, not an error.
            response.ttl = -1
        }
        header.fill(&response.header)
        response.header.revision = try replica.read { $0.store.currentRevision }
        return response
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws
        -> Etcdserverpb_LeaseLeasesResponse
    {
        let identity = try await authenticator.requireUser()
        var response = Etcdserverpb_LeaseLeasesResponse()
        response.leases = try replica.read { (replica) throws(ReplicaError) in
            let leases = replica.lessor.leasesByExpiry()
            // Every lease's keys must be readable to list them (etcd 3.5.28 on).
            for id in leases { try replica.checkLeaseKeys(identity, lease: id.rawValue, .read) }
            return leases
        }.map { id in
            var status = Etcdserverpb_LeaseStatus()
            status.id = id.rawValue
            return status
        }
        header.fill(&response.header)
        response.header.revision = try replica.read { $0.store.currentRevision }
        return response
    }
}
