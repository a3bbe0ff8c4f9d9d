@testable import EtcdLease
import Testing

/// A fake monotonic clock: tests move time by hand, so no test sleeps.
struct FakeClock {
    var now = MonotonicTime(nanoseconds: 1_000_000_000)
    mutating func advance(_ duration: Duration) { now = now + duration }
}

func makeLessor(minTTL: Int64 = 2, checkpointInterval: Duration? = .seconds(300)) -> Lessor {
    Lessor(configuration: .init(minTTLSeconds: minTTL, checkpointInterval: checkpointInterval, expiredRetryInterval: .seconds(7)))
}

let key = Array("k".utf8)

@Suite("Lessor: grants, keys and revocation (applied state)")
struct LessorAppliedTests {
    @Test("grant raises short TTLs to the minimum and refuses ID 0, duplicates and TTLs over etcd's maximum")
    func grant() throws {
        let lessor = makeLessor()
        let clock = FakeClock()
        #expect(try lessor.grant(LeaseID(1), ttl: 1, now: clock.now) == 2)
        #expect(try lessor.grant(LeaseID(2), ttl: -5, now: clock.now) == 2)
        #expect(try lessor.grant(LeaseID(3), ttl: 60, now: clock.now) == 60)
        #expect(throws: LeaseError.exists) { try lessor.grant(LeaseID(3), ttl: 60, now: clock.now) }
        #expect(throws: LeaseError.notFound) { try lessor.grant(.none, ttl: 60, now: clock.now) }
        #expect(throws: LeaseError.ttlTooLarge) { try lessor.grant(LeaseID(4), ttl: Lessor.maxTTLSeconds + 1, now: clock.now) }
        #expect(try lessor.grant(LeaseID(4), ttl: Lessor.maxTTLSeconds, now: clock.now) == Lessor.maxTTLSeconds)
        #expect(lessor.count == 4)
    }

    @Test("the minimum TTL is 1.5 election timeouts rounded up to whole seconds")
    func minimumTTL() {
        #expect(Lessor.Configuration.minTTLSeconds(electionTimeout: .milliseconds(1_000)) == 2)
        #expect(Lessor.Configuration.minTTLSeconds(electionTimeout: .milliseconds(2_000)) == 3)
        #expect(Lessor.Configuration.minTTLSeconds(electionTimeout: .milliseconds(500)) == 1)
    }

    @Test("puts attach keys, re-puts move them between leases, deletes and lease-less puts detach them")
    func attachments() throws {
        let lessor = makeLessor()
        let now = FakeClock().now
        _ = try lessor.grant(LeaseID(1), ttl: 60, now: now)
        _ = try lessor.grant(LeaseID(2), ttl: 60, now: now)
        let a = Array("a".utf8), b = Array("b".utf8)
        lessor.recordPut(b, lease: LeaseID(1))
        lessor.recordPut(a, lease: LeaseID(1))
        #expect(lessor.attachedKeys(LeaseID(1)) == [a, b])
        lessor.recordPut(a, lease: LeaseID(2))
        #expect(lessor.attachedKeys(LeaseID(1)) == [b])
        #expect(lessor.attachedKeys(LeaseID(2)) == [a])
        #expect(lessor.lease(of: a) == LeaseID(2))
        lessor.recordPut(a, lease: .none)
        #expect(lessor.attachedKeys(LeaseID(2)) == [])
        lessor.recordDelete(b)
        #expect(lessor.attachedKeys(LeaseID(1)) == [])
        #expect(lessor.lease(of: b) == .none)
        #expect(lessor.attachedKeys(LeaseID(9)) == nil)
    }

    @Test("status reports truncated whole seconds left, the granted TTL and the keys in byte order")
    func status() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(7), ttl: 60, now: clock.now)
        lessor.recordPut(Array("z".utf8), lease: LeaseID(7))
        lessor.recordPut(Array("y".utf8), lease: LeaseID(7))
        clock.advance(.milliseconds(1))
        let status = try #require(lessor.status(LeaseID(7), now: clock.now, includeKeys: true))
        #expect(status.remainingSeconds == 59)
        #expect(status.grantedTTL == 60)
        #expect(status.keys == [Array("y".utf8), Array("z".utf8)])
        #expect(lessor.status(LeaseID(7), now: clock.now, includeKeys: false)?.keys == [])
        #expect(lessor.status(LeaseID(8), now: clock.now, includeKeys: true) == nil)
    }

    @Test("restore rebuilds leases and attachments, drops attachments to missing leases, and starts non-primary")
    func restore() {
        let lessor = makeLessor(minTTL: 5)
        let orphans = lessor.restore(
            leases: [PersistedLease(id: LeaseID(1), ttl: 3, remainingTTL: 0), PersistedLease(id: LeaseID(2), ttl: 600, remainingTTL: 100)],
            attachments: [(key, LeaseID(2)), (Array("x".utf8), LeaseID(3))]
        )
        #expect(orphans.map(\.1) == [LeaseID(3)])
        #expect(lessor.persisted(LeaseID(1)) == PersistedLease(id: LeaseID(1), ttl: 5, remainingTTL: 0))
        #expect(lessor.attachedKeys(LeaseID(2)) == [key])
        #expect(!lessor.isPrimary)
        #expect(lessor.renew(LeaseID(2), now: .zero) == .notPrimary)
    }
}

@Suite("Lessor: expiry on the leader, with a fake clock")
struct LessorExpiryTests {
    @Test("a lease expires after its TTL, not before, and is handed out again only after the retry interval")
    func expiry() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(1), ttl: 10, now: clock.now)
        clock.advance(.milliseconds(9_999))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        #expect(!lessor.isExpired(LeaseID(1), now: clock.now))
        clock.advance(.milliseconds(1))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(1)])
        #expect(lessor.isExpired(LeaseID(1), now: clock.now))
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .expired)
        clock.advance(.seconds(6))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        clock.advance(.seconds(1))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(1)])
        lessor.remove(LeaseID(1))
        clock.advance(.seconds(60))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .notFound)
    }

    @Test("a keepalive restarts the full TTL from now")
    func renewal() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(1), ttl: 10, now: clock.now)
        for _ in 0..<20 {
            clock.advance(.seconds(8))
            #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
            #expect(lessor.renew(LeaseID(1), now: clock.now) == .renewed(ttl: 10, clearsCheckpoint: false))
        }
        clock.advance(.milliseconds(9_999))
        #expect(lessor.status(LeaseID(1), now: clock.now, includeKeys: false)?.remainingSeconds == 0)
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        clock.advance(.milliseconds(1))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(1)])
    }

    @Test("expired leases come out soonest first, at most `limit` at a time")
    func orderAndLimit() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        for id in 1...5 { _ = try lessor.grant(LeaseID(Int64(id)), ttl: Int64(10 - id), now: clock.now) }
        #expect(lessor.leasesByExpiry() == [5, 4, 3, 2, 1].map { LeaseID($0) })
        clock.advance(.seconds(20))
        #expect(lessor.takeExpired(now: clock.now, limit: 2) == [LeaseID(5), LeaseID(4)])
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(3), LeaseID(2), LeaseID(1)])
    }

    @Test("renewals do not let the expiry heap grow without bound")
    func heapBound() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        for id in 1...10 { _ = try lessor.grant(LeaseID(Int64(id)), ttl: 100, now: clock.now) }
        for _ in 0..<10_000 {
            clock.advance(.milliseconds(1))
            for id in 1...10 { _ = lessor.renew(LeaseID(Int64(id)), now: clock.now) }
        }
        #expect(lessor.expiryQueueCount <= 2 * 10 + 1_024 + 1)
        clock.advance(.seconds(100))
        #expect(lessor.takeExpired(now: clock.now, limit: 100).count == 10)
    }

    @Test("a follower never expires anything; promotion gives every lease its TTL plus the election timeout")
    func promotion() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        _ = try lessor.grant(LeaseID(1), ttl: 10, now: clock.now)
        clock.advance(.seconds(3_600))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        #expect(lessor.status(LeaseID(1), now: clock.now, includeKeys: false)?.remainingSeconds == Int64.max / 1_000_000_000)
        lessor.promote(now: clock.now, extend: .seconds(1))
        clock.advance(.milliseconds(10_999))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        clock.advance(.milliseconds(1))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(1)])
        lessor.demote()
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .notPrimary)
        clock.advance(.seconds(100))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
    }

    @Test("promotion with many leases spreads expiries to three quarters of the revoke rate per second")
    func pileUp() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        for id in 1...3_000 { _ = try lessor.grant(LeaseID(Int64(id)), ttl: 10, now: clock.now) }
        lessor.promote(now: clock.now, extend: .seconds(1))
        var perSecond: [Int] = []
        for _ in 0..<20 {
            clock.advance(.seconds(1))
            let expired = lessor.takeExpired(now: clock.now, limit: 10_000)
            for id in expired { lessor.remove(id) }
            perSecond.append(expired.count)
        }
        #expect(perSecond.reduce(0, +) == 3_000)
        #expect(perSecond.allSatisfy { $0 <= 751 }, "expiries per second: \(perSecond)")
    }

    @Test("after a stall every lease gets the grace period, so keepalives sent meanwhile land before any revocation")
    func stall() throws {
        let lessor = makeLessor()
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(1), ttl: 5, now: clock.now)
        _ = try lessor.grant(LeaseID(2), ttl: 600, now: clock.now)
        clock.advance(.seconds(30))
        #expect(lessor.extendAfterStall(now: clock.now, grace: .seconds(1)) == 1)
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [])
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .renewed(ttl: 5, clearsCheckpoint: false))
        clock.advance(.seconds(5))
        #expect(lessor.takeExpired(now: clock.now, limit: 10) == [LeaseID(1)])
        #expect(lessor.status(LeaseID(2), now: clock.now, includeKeys: false)?.remainingSeconds == 565)
    }
}

@Suite("Lessor: checkpoints of remaining TTL")
struct LessorCheckpointTests {
    @Test("long leases are checkpointed every interval with their remaining whole seconds; short ones never")
    func schedule() throws {
        let lessor = makeLessor(checkpointInterval: .seconds(300))
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(1), ttl: 3_600, now: clock.now)
        _ = try lessor.grant(LeaseID(2), ttl: 300, now: clock.now)
        clock.advance(.milliseconds(299_999))
        #expect(lessor.takeDueCheckpoints(now: clock.now, limit: 10).isEmpty)
        clock.advance(.milliseconds(1))
        let due = lessor.takeDueCheckpoints(now: clock.now, limit: 10)
        #expect(due.map(\.id) == [LeaseID(1)])
        #expect(due.map(\.remainingTTL) == [3_300])
        // Applying the checkpoint schedules the next one.
        lessor.checkpoint(LeaseID(1), remainingTTL: 3_300, now: clock.now)
        #expect(lessor.persisted(LeaseID(1))?.remainingTTL == 3_300)
        clock.advance(.seconds(300))
        #expect(lessor.takeDueCheckpoints(now: clock.now, limit: 10).map(\.remainingTTL) == [3_000])
    }

    @Test("promotion starts from the checkpointed remainder, so a leader change does not reset a long TTL")
    func promotionUsesRemainder() throws {
        let lessor = makeLessor()
        let clock = FakeClock()
        _ = try lessor.grant(LeaseID(1), ttl: 3_600, now: clock.now)
        lessor.checkpoint(LeaseID(1), remainingTTL: 100, now: clock.now)
        lessor.promote(now: clock.now, extend: .seconds(1))
        #expect(lessor.status(LeaseID(1), now: clock.now, includeKeys: false)?.remainingSeconds == 101)
        // A keepalive restores the full TTL and asks for the remainder to be cleared.
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .renewed(ttl: 3_600, clearsCheckpoint: true))
        lessor.checkpoint(LeaseID(1), remainingTTL: 0, now: clock.now)
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .renewed(ttl: 3_600, clearsCheckpoint: false))
        #expect(lessor.status(LeaseID(1), now: clock.now, includeKeys: false)?.remainingSeconds == 3_600)
    }

    @Test("without checkpoints nothing is scheduled and renewals never ask for a clear")
    func disabled() throws {
        let lessor = makeLessor(checkpointInterval: nil)
        var clock = FakeClock()
        lessor.promote(now: clock.now, extend: .zero)
        _ = try lessor.grant(LeaseID(1), ttl: 3_600, now: clock.now)
        lessor.checkpoint(LeaseID(1), remainingTTL: 100, now: clock.now)
        clock.advance(.seconds(1_000))
        #expect(lessor.takeDueCheckpoints(now: clock.now, limit: 10).isEmpty)
        #expect(lessor.renew(LeaseID(1), now: clock.now) == .renewed(ttl: 3_600, clearsCheckpoint: false))
    }
}
