import EtcdAPI
import EtcdBackend
import EtcdLease
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import EtcdTestSupport
import Foundation
import Logging
import SwiftProtobuf
import Synchronization
import Testing

@testable import EtcdServer

/// The leader's lease duties as the Raft loop runs them, on a lone member whose replica reads a
/// clock the test moves: expiry through a ReadIndex-confirmed revocation, and the stall safeguard
/// (a gap between two lease checks longer than an election timeout extends every lease instead
/// of revoking the ones whose deadline passed meanwhile). No sleeps: the ticks are handed to the
/// loop's core directly.
@Suite("Raft loop: lease expiry on the leader")
struct LeaseLoopTests {
    /// A monotonic clock that moves only when told.
    final class ManualClock: Sendable {
        private let nanoseconds = Atomic<Int64>(0)
        var now: MonotonicTime { MonotonicTime(nanoseconds: nanoseconds.load(ordering: .relaxed)) }
        func advance(by duration: Duration) {
            nanoseconds.add(duration.nanoseconds, ordering: .relaxed)
        }
    }

    /// A lone member's loop core and the replica behind it, elected and serving.
    final class LoneMember {
        let clock: ManualClock
        let core: LoopCore
        let replica: ReplicaHandle
        /// One Raft tick; the election timeout is ten of them, as on etcd's defaults.
        static let tick = Duration.milliseconds(100)
        static let electionTimeout = Duration.seconds(1)

        init(directory: String) throws {
            let logger = Logger(label: "etcd.lease-loop.test")
            let clock = ManualClock()
            self.clock = clock
            let store = try MVCCStore(backend: Backend(path: nil))
            let replica = try Replica(
                store: store, logger: logger, leases: Lessor.Configuration(minTTLSeconds: 2), clock: { clock.now })
            var log = DurableRaftLog.Configuration(memberDirectory: directory + "/member")
            log.unsafeNoFsync = true
            var options = RaftMember.Options(id: NodeID(1), log: log)
            options.electionTicks = 10
            let member = try RaftMember.open(options, metadata: [], appliedIndex: replica.appliedIndex, logger: logger)
            self.replica = ReplicaHandle(replica)
            var configuration = RaftLoopConfiguration()
            configuration.tickInterval = Self.tick
            configuration.electionTimeout = Self.electionTimeout
            configuration.unsafeNoFsync = true
            core = LoopCore(
                member: member, replica: self.replica, checkpointer: nil, pending: PendingRequests(capacity: 100),
                status: MemberStatusBoard(), configuration: configuration, logger: logger, publishChanges: { _ in }
            )
            try core.start()
        }

        /// Proposes `request` as the member's own entry, runs the cycles that commit it and
        /// waits until it is applied.
        func propose(_ request: Etcdserverpb_InternalRaftRequest) throws {
            try core.process(MailboxWork(proposals: [QueuedProposal(id: 0, data: try request.serializedBytes())]))
            try core.settle()
        }

        func grant(_ id: Int64, ttl: Int64) throws {
            var request = Etcdserverpb_InternalRaftRequest()
            request.leaseGrant.id = id
            request.leaseGrant.ttl = ttl
            try propose(request)
        }

        func put(_ key: String, lease: Int64) throws {
            var request = Etcdserverpb_InternalRaftRequest()
            request.put.key = Data(key.utf8)
            request.put.value = Data("v".utf8)
            request.put.lease = lease
            try propose(request)
        }

        /// Moves the clock on by `duration` one tick at a time, running the loop's tick work
        /// (and so its lease duties) after each.
        func run(for duration: Duration) throws {
            var elapsed = Duration.zero
            while elapsed < duration {
                clock.advance(by: Self.tick)
                elapsed += Self.tick
                try core.process(MailboxWork(tick: true))
                try core.settle()
            }
        }

        /// The clock jumps by `duration` with no tick in between (a long fsync, a paused
        /// process), then one tick runs.
        func stall(for duration: Duration) throws {
            clock.advance(by: duration)
            try core.process(MailboxWork(tick: true))
            try core.settle()
        }

        func leaseExists(_ id: Int64) -> Bool {
            replica.withReplica { $0.lessor.contains(LeaseID(id)) }
        }

        func keyExists(_ key: String) -> Bool {
            replica.withReplica { replica in
                var range = Etcdserverpb_RangeRequest()
                range.key = Data(key.utf8)
                range.countOnly = true
                return ((try? replica.range(range))?.count ?? 0) > 0
            }
        }

        func renew(_ id: Int64) -> Lessor.RenewOutcome {
            replica.withReplica { $0.lessor.renew(LeaseID(id), now: $0.now) }
        }

        func stop() throws {
            try core.stop()
        }
    }

    private func withLoneMember(_ body: (LoneMember) throws -> Void) async throws {
        try await withTemporaryDirectory { directory in
            let member = try LoneMember(directory: directory.path)
            try body(member)
            try member.stop()
        }
    }

    @Test("an expired lease is revoked through Raft within a tick or two of its deadline, with its keys")
    func expiry() async throws {
        try await withLoneMember { member in
            try member.grant(1, ttl: 3)
            try member.put("session", lease: 1)
            try member.run(for: .milliseconds(2_900))
            #expect(member.leaseExists(1))
            #expect(member.keyExists("session"))
            try member.run(for: .milliseconds(300))
            #expect(!member.leaseExists(1))
            #expect(!member.keyExists("session"))
        }
    }

    @Test("a keepalive before the deadline keeps the lease for another TTL")
    func renewal() async throws {
        try await withLoneMember { member in
            try member.grant(1, ttl: 3)
            try member.run(for: .seconds(2))
            guard case .renewed(let ttl, _) = member.renew(1) else {
                Issue.record("a live lease was not renewed")
                return
            }
            #expect(ttl == 3)
            try member.run(for: .milliseconds(2_900))
            #expect(member.leaseExists(1))
            try member.run(for: .milliseconds(300))
            #expect(!member.leaseExists(1))
        }
    }

    @Test("after a stall past every deadline, no lease is revoked at once: each gets the election timeout, so a keepalive sent meanwhile saves it")
    func stallGrace() async throws {
        try await withLoneMember { member in
            try member.grant(1, ttl: 3)
            try member.grant(2, ttl: 3)
            try member.put("renewed", lease: 1)
            try member.put("abandoned", lease: 2)
            try member.run(for: .seconds(1))
            // Both deadlines pass during the stall; without the safeguard this tick revokes both.
            try member.stall(for: .seconds(10))
            #expect(member.leaseExists(1) && member.leaseExists(2))
            #expect(member.keyExists("renewed") && member.keyExists("abandoned"))
            // The client of lease 1 gets its keepalive through within the grace period.
            try member.run(for: .milliseconds(500))
            guard case .renewed = member.renew(1) else {
                Issue.record("a lease extended after the stall was not renewable")
                return
            }
            try member.run(for: .milliseconds(800))
            // Lease 2's grace (one election timeout) is over: it goes, lease 1 stays.
            #expect(!member.leaseExists(2))
            #expect(!member.keyExists("abandoned"))
            #expect(member.leaseExists(1))
            #expect(member.keyExists("renewed"))
        }
    }

    @Test("a gap no longer than the election timeout is not a stall: a lease past its deadline goes at that tick")
    func shortGapIsNoStall() async throws {
        try await withLoneMember { member in
            try member.grant(1, ttl: 3)
            try member.run(for: .milliseconds(2_500))
            try member.stall(for: .milliseconds(900))
            #expect(!member.leaseExists(1))
        }
    }

    @Test("readers that keep the replica busy without a pause do not hold expiry back: the loop waits for its turn after a few busy ticks")
    func busyReplica() async throws {
        try await withLoneMember { member in
            try member.grant(1, ttl: 3)
            try member.put("session", lease: 1)
            // Two readers holding the replica almost all the time, as a heavy read load does.
            final class Readers: Sendable {
                let stopped = Atomic<Bool>(false)
                let running = Atomic<Int>(0)
            }
            let readers = Readers()
            let replica = member.replica
            for _ in 0..<2 {
                readers.running.add(1, ordering: .relaxed)
                Thread {
                    while !readers.stopped.load(ordering: .relaxed) {
                        _ = try? replica.read { _ in usleep(2_000) }
                        usleep(200)
                    }
                    readers.running.subtract(1, ordering: .relaxed)
                }.start()
            }
            func stopReaders() {
                readers.stopped.store(true, ordering: .relaxed)
                while readers.running.load(ordering: .relaxed) > 0 { usleep(1_000) }
            }
            defer { stopReaders() }
            try member.run(for: .milliseconds(3_300))
            stopReaders()
            // Without the wait, the first check that got through would see a gap of seconds,
            // call it a stall and extend the lease instead.
            try member.run(for: .milliseconds(100))
            #expect(!member.leaseExists(1))
            #expect(!member.keyExists("session"))
        }
    }
}

