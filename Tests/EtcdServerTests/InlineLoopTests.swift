import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import EtcdTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import EtcdServer

/// Work done outside the Raft loop's thread while the loop is idle (a follower's read index
/// request and forwarded proposal, heartbeats, read indexes, appends that only commit): three
/// loops in one process, whose messages are handed straight to each other's mailboxes, so
/// that a delivery often steps the receiver on the sender's thread.
@Suite("Raft loop: work done while the loop is idle")
struct InlineLoopTests {
    /// Routes each loop's messages to the addressee's mailbox, as the peer transport does.
    private final class Router: Sendable {
        let mailboxes = Mutex<[NodeID: RaftMailbox]>([:])

        func send(_ messages: [EtcdRaft.Message]) {
            let mailboxes = self.mailboxes.withLock { $0 }
            for (peer, batch) in Dictionary(grouping: messages, by: \.to) {
                mailboxes[peer]?.deliverFromPeers(.messages(batch))
            }
        }
    }

    private struct Member {
        let loop: RaftLoop
        let proposer: RequestProposer
        let replica: ReplicaHandle
    }

    private func withCluster(_ body: ([Member]) async throws -> Void) async throws {
        try await withTemporaryDirectory { directory in
            let logger = Logger(label: "etcd.inline-loop.test")
            let router = Router()
            let ids = [NodeID(1), NodeID(2), NodeID(3)]
            var members: [Member] = []
            for id in ids {
                let dataDirectory = directory.path + "/\(id.rawValue)"
                try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
                let replica = try Replica(store: MVCCStore(backend: try Backend(dataDirectory: dataDirectory)), logger: logger)
                var log = DurableRaftLog.Configuration(memberDirectory: dataDirectory + "/member")
                log.unsafeNoFsync = true
                var options = RaftMember.Options(id: id, log: log)
                options.initialVoters = ids
                options.seed = id.rawValue
                for voter in ids {
                    options.bootstrapContexts[voter] = MembershipChangeContext(
                        member: ClusterMember(id: MemberID(voter.rawValue), peerURLs: ["http://127.0.0.1:\(voter.rawValue)"])
                    ).encoded()
                }
                let member = try RaftMember.open(options, metadata: [], appliedIndex: 0, logger: logger)
                var configuration = RaftLoopConfiguration()
                configuration.tickInterval = .milliseconds(20)
                configuration.electionTimeout = .milliseconds(200)
                configuration.unsafeNoFsync = true
                configuration.sendToPeers = { router.send($0) }
                let handle = ReplicaHandle(replica)
                let mailbox = RaftMailbox()
                router.mailboxes.withLock { $0[id] = mailbox }
                let loop = RaftLoop(
                    member: member, replica: handle, mailbox: mailbox, pending: PendingRequests(capacity: 1_000),
                    status: MemberStatusBoard(), configuration: configuration, logger: logger)
                let proposer = RequestProposer(
                    loop: loop, maxRequestBytes: 1 << 20, requestTimeout: .seconds(10), memberID: MemberID(id.rawValue))
                members.append(Member(loop: loop, proposer: proposer, replica: handle))
            }
            for member in members { try await member.loop.start() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for member in members {
                    group.addTask { try await member.loop.run() }
                    group.addTask { await member.loop.runTicker() }
                }
                defer { for member in members { member.loop.mailbox.close() } }
                try await waitUntil {
                    let leaders = Set(members.map(\.loop.status.leader))
                    return leaders.count == 1 && leaders.first != 0
                }
                try await body(members)
            }
        }
    }

    private func put(_ key: String, _ value: String, through member: Member) async throws {
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.put.key = Data(key.utf8)
        entry.put.value = Data(value.utf8)
        _ = try await member.proposer.propose(entry)
    }

    /// A linearizable read of `key` on `member`: its read barrier, then its store.
    private func linearizableGet(_ key: String, on member: Member) async throws -> String? {
        try await member.proposer.waitForLinearizableRead()
        let kvs = try member.replica.withReplica { try $0.store.range(.key(Array(key.utf8)), options: RangeOptions()).kvs }
        return kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
    }

    @Test("writes and linearizable reads through any member see every acknowledged write, with followers' traffic stepped while their loops are idle")
    func readsSeeAcknowledgedWrites() async throws {
        try await withCluster { members in
            let before = members.map { $0.loop.inlineRuns.load(ordering: .relaxed) }
            // One client going round the members: each read, wherever it runs, sees the write
            // acknowledged just before it, wherever that ran.
            for round in 0..<60 {
                let writer = members[round % 3]
                let reader = members[(round + 1) % 3]
                try await put("key", "value-\(round)", through: writer)
                #expect(try await linearizableGet("key", on: reader) == "value-\(round)")
            }
            // Concurrent clients, each checking its own key.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<8 {
                    group.addTask {
                        for round in 0..<15 {
                            let key = "client-\(client)"
                            try await put(key, "\(round)", through: members[(client + round) % 3])
                            #expect(try await linearizableGet(key, on: members[(client + round + 1) % 3]) == "\(round)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let after = members.map { $0.loop.inlineRuns.load(ordering: .relaxed) }
            // Each follower asked for read indexes and forwarded proposals without waking its
            // loop, and the leader stepped read index requests and heartbeat answers likewise.
            for index in members.indices {
                #expect(after[index] > before[index], "member \(index + 1) did no work while its loop was idle")
            }
            // All three applied the same history.
            try await waitUntil { Set(members.map(\.loop.status.appliedIndex)).count == 1 }
        }
    }
}
