import EtcdAPI
import EtcdAuth
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import EtcdTestSupport
import Foundation
import GRPCCore
import Logging
import Synchronization
import Testing

@testable import EtcdServer

/// The Raft loop's bounds and background work: waiting writes bounded in bytes, callers that
/// leave free their place, compaction deleted in steps between requests, backend checkpoints
/// outside the replica's lock, and apply on a queue of its own.
@Suite("Raft loop: bounds and background work")
struct LoopHardeningTests {
    /// A loop on a lone member with a file-backed store, built but not running: proposals stay
    /// queued until the test says otherwise.
    private func withIdleLoop(
        _ body: (RaftLoop, RequestProposer, ReplicaHandle) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory { directory in
            let logger = Logger(label: "etcd.loop-hardening.test")
            let backend = try Backend(dataDirectory: directory.path, automaticCheckpoints: false)
            let replica = try Replica(store: MVCCStore(backend: backend), logger: logger)
            var log = DurableRaftLog.Configuration(memberDirectory: directory.path + "/member")
            log.unsafeNoFsync = true
            let member = try RaftMember.open(
                RaftMember.Options(id: NodeID(1), log: log), metadata: [], appliedIndex: 0, logger: logger)
            let handle = ReplicaHandle(replica)
            let loop = RaftLoop(
                member: member, replica: handle,
                checkpointer: try BackendCheckpointer(path: Backend.databasePath(dataDirectory: directory.path)),
                mailbox: RaftMailbox(), pending: PendingRequests(capacity: 100, maxBytes: 10_000),
                status: MemberStatusBoard(), configuration: RaftLoopConfiguration(), logger: logger)
            let proposer = RequestProposer(
                loop: loop, maxRequestBytes: 1 << 20, requestTimeout: .seconds(60), memberID: MemberID(1))
            try await body(loop, proposer, handle)
            loop.mailbox.close()
        }
    }

    /// The idle loop of ``withIdleLoop``, started and running with its ticker; stopped (and
    /// its end awaited) after `body`.
    private func withRunningLoop(
        _ body: (RaftLoop, RequestProposer, ReplicaHandle) async throws -> Void
    ) async throws {
        try await withIdleLoop { loop, proposer, replica in
            try await loop.start()
            let running = Task { try await loop.run() }
            let ticker = Task { await loop.runTicker() }
            defer {
                loop.mailbox.close()
                ticker.cancel()
            }
            try await body(loop, proposer, replica)
            loop.mailbox.close()
            try await running.value
        }
    }

    private func putEntry(_ key: String, valueBytes: Int) -> Etcdserverpb_InternalRaftRequest {
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.put.key = Data(key.utf8)
        entry.put.value = Data(repeating: 0x61, count: valueBytes)
        return entry
    }

    @Test("waiting writes are bounded in bytes as well as in number: past the bound a write is 'too many requests'")
    func pendingBytes() async throws {
        try await withIdleLoop { loop, proposer, _ in
            // Two writes of 4 KB wait (the loop is not running); a third would pass 10,000 bytes.
            let first = Task { try await proposer.propose(putEntry("a", valueBytes: 4_000)) }
            let second = Task { try await proposer.propose(putEntry("b", valueBytes: 4_000)) }
            try await waitUntil { loop.pending.waitingWrites == 2 }
            #expect(loop.pending.waitingWriteBytes > 8_000)
            let refused = await #expect(throws: EtcdError.tooManyRequests) {
                _ = try await proposer.propose(putEntry("c", valueBytes: 4_000))
            }
            #expect(refused?.message == "etcdserver: too many requests")
            // Small writes still fit.
            let small = Task { try await proposer.propose(putEntry("d", valueBytes: 10)) }
            try await waitUntil { loop.pending.waitingWrites == 3 }
            for task in [first, second, small] { task.cancel() }
            try await waitUntil { loop.pending.waitingWrites == 0 }
            #expect(loop.pending.waitingWriteBytes == 0)
        }
    }

    @Test("a caller that goes away frees its place at once, for writes and linearizable reads")
    func cancelledCallersLeave() async throws {
        try await withIdleLoop { loop, proposer, _ in
            let write = Task { try await proposer.propose(putEntry("a", valueBytes: 10)) }
            let read = Task { try await proposer.waitForLinearizableRead() }
            try await waitUntil { loop.pending.waitingWrites == 1 && loop.pending.waitingReads == 1 }
            write.cancel()
            read.cancel()
            // Without cancellation handling both would wait for their 60 s deadline.
            try await waitUntil { loop.pending.waitingWrites == 0 && loop.pending.waitingReads == 0 }
            let writeError = await #expect(throws: RPCError.self) { _ = try await write.value }
            #expect(writeError?.code == .cancelled)
            await #expect(throws: RPCError.self) { try await read.value }
        }
    }

    @Test("a request that could never be applied is refused before it is proposed")
    func undecodableProposalRefused() async throws {
        try await withIdleLoop { loop, proposer, _ in
            var txn = Etcdserverpb_TxnRequest()
            txn.success = [Etcdserverpb_RequestOp()]
            for _ in 0..<80 {
                var op = Etcdserverpb_RequestOp()
                op.requestTxn = txn
                txn = Etcdserverpb_TxnRequest()
                txn.success = [op]
            }
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.txn = txn
            let error = await #expect(throws: RPCError.self) { _ = try await proposer.propose(entry) }
            #expect(error?.code == .invalidArgument)
            #expect(loop.pending.waitingWrites == 0)
        }
    }

    @Test("a stalled apply does not stall the loop: entries are persisted and committed meanwhile, ticks go on, and every write is answered once apply resumes")
    func applyStallDoesNotBlockLoop() async throws {
        try await withRunningLoop { loop, proposer, replica in
            var grant = Etcdserverpb_InternalRaftRequest()
            grant.leaseGrant.id = 7
            grant.leaseGrant.ttl = 60
            _ = try await proposer.propose(grant)
            let appliedBefore = loop.status.appliedIndex

            // Something holds the replica as a very long apply would (a huge txn or revocation).
            let holding = Atomic<Bool>(false)
            let release = Atomic<Bool>(false)
            let holder = Thread {
                replica.withReplica { _ in
                    holding.store(true, ordering: .releasing)
                    while !release.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.001) }
                }
            }
            holder.start()
            defer { release.store(true, ordering: .releasing) }
            try await waitUntil { holding.load(ordering: .acquiring) }

            let writes = (0..<5).map { index in
                Task { try await proposer.propose(putEntry("key-\(index)", valueBytes: 10)) }
            }
            // The loop commits all five while apply waits; before, it applied inline and would
            // have been stuck behind the held replica, with no tick (no heartbeat) either.
            try await waitUntil { loop.status.committedIndex >= appliedBefore + 5 }
            #expect(loop.status.appliedIndex == appliedBefore)
            #expect(loop.pending.waitingWrites == 5)
            // Ticks keep running through the stall: the lease work of a tick skips a busy replica
            // rather than waiting for it, so a write proposed after a few ticks still commits.
            try await Task.sleep(for: .milliseconds(350))
            let late = Task { try await proposer.propose(putEntry("late", valueBytes: 10)) }
            try await waitUntil { loop.status.committedIndex >= appliedBefore + 6 }
            #expect(loop.status.appliedIndex == appliedBefore)

            release.store(true, ordering: .releasing)
            for write in writes + [late] { _ = try await write.value }
            #expect(loop.status.appliedIndex == loop.status.committedIndex)
            let keys = try replica.read { replica in
                var range = Etcdserverpb_RangeRequest()
                range.key = Data("key-".utf8)
                range.rangeEnd = Data("key.".utf8)
                range.countOnly = true
                return try replica.range(range).count
            }
            #expect(keys == 5)
        }
    }

    /// Collects what a server handler writes to a stream.
    private struct CollectingWriter<Element: Sendable>: RPCWriterProtocol {
        let continuation: AsyncStream<Element>.Continuation
        func write(_ element: Element) async throws { continuation.yield(element) }
        func write(contentsOf elements: some Sequence<Element>) async throws {
            for element in elements { continuation.yield(element) }
        }
    }

    @Test("a keepalive that arrives while its lease's revocation is in flight is answered TTL 0 once it is applied, not 'renewed'")
    func keepaliveDuringRevoke() async throws {
        try await withRunningLoop { loop, proposer, replica in
            let service = LeaseService(
                writer: proposer, replica: replica,
                header: ResponseHeaderSource(clusterID: ClusterID(1), memberID: MemberID(1), status: loop.status),
                forwarder: LeaderForwarder(
                    localMember: MemberID(1), status: loop.status, replica: replica, requestTimeout: .seconds(10),
                    logger: Logger(label: "test")),
                requestTimeout: .seconds(10), pollInterval: .milliseconds(10), shutdown: ShutdownSignal(),
                quota: BackendQuota(
                    limitBytes: nil, status: loop.status, proposer: proposer, memberID: MemberID(1), replica: replica),
                authenticator: Authenticator(
                    board: replica.withReplica { $0.authBoard }, replica: replica, status: loop.status,
                    hasher: PasswordHasher(cost: 4), clientCertificateAuth: false, requestTimeout: .seconds(10)))
            var grant = Etcdserverpb_InternalRaftRequest()
            grant.leaseGrant.id = 5
            grant.leaseGrant.ttl = 60
            _ = try await proposer.propose(grant)

            // A revocation is on its way (proposed, not yet applied) when the keepalive arrives.
            service.revokes.begin(LeaseID(5))
            let (requests, requestStream) = AsyncThrowingStream<Etcdserverpb_LeaseKeepAliveRequest, any Error>.makeStream()
            let (answers, answerStream) = AsyncStream<Etcdserverpb_LeaseKeepAliveResponse>.makeStream()
            let stream = Task {
                try await withServerContextRPCCancellationHandle { cancellation in
                    let context = ServerContext(
                        descriptor: Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor, remotePeer: "test",
                        localPeer: "test", cancellation: cancellation)
                    try await service.leaseKeepAlive(
                        request: RPCAsyncSequence(wrapping: requests),
                        response: RPCWriter(wrapping: CollectingWriter(continuation: answerStream)), context: context)
                }
            }
            var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
            keepAlive.id = 5
            requestStream.yield(keepAlive)
            var revoke = Etcdserverpb_InternalRaftRequest()
            revoke.leaseRevoke.id = 5
            _ = try await proposer.propose(revoke)
            service.revokes.end(LeaseID(5))

            var iterator = answers.makeAsyncIterator()
            let answer = try #require(await iterator.next())
            #expect(answer.id == 5)
            #expect(answer.ttl == 0, "the keepalive renewed a lease whose revocation was in flight")
            requestStream.finish()
            try await stream.value
        }
    }
}
