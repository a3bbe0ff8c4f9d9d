import EtcdAPI
import EtcdBackend
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

/// A lone member driven the way the server's Raft loop drives it (propose, run Ready cycles that
/// apply to the replica, snapshot when due), without threads, so that crashes can be placed
/// exactly: a "crash" closes the WAL and drops the replica with its backend batch uncommitted.
final class TestMember {
    let replica: Replica
    let member: RaftMember
    private(set) var results: [UInt64: Result<ApplyResponse, ReplicaError>] = [:]
    private var nextRequestID: UInt64
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    init(directory: String, snapshotCount: UInt64, firstRequestID: UInt64 = 1) throws {
        replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Self.logger)
        var log = DurableRaftLog.Configuration(memberDirectory: directory + "/member")
        log.maxSnapshots = 2
        log.catchUpEntries = 5
        var options = RaftMember.Options(id: NodeID(1), log: log)
        options.snapshotCount = snapshotCount
        member = try RaftMember.open(options, metadata: [1, 2, 3], appliedIndex: replica.appliedIndex, logger: Self.logger)
        nextRequestID = firstRequestID
        try runCycles()
        member.campaignIfAlone()
        try runCycles()
        try #require(member.isLeader)
    }

    func runCycles() throws {
        let replica = self.replica
        var applied: [AppliedRequest] = []
        while try member.runCycle(apply: { (entries) throws(ReplicaError) in
            applied += try replica.apply(entries)
            return replica.takeRefusedConfChanges()
        }) != nil {}
        for request in applied { results[request.requestID] = request.result }
        if member.snapshotDue(appliedIndex: replica.appliedIndex) {
            try replica.commitBackend(durably: true)
            try member.createSnapshot(at: replica.appliedIndex)
        }
    }

    /// Puts through Raft and returns the revision it got.
    @discardableResult
    func put(_ key: String, _ value: String) throws -> Int64 {
        var request = Etcdserverpb_InternalRaftRequest()
        request.put.key = Data(key.utf8)
        request.put.value = Data(value.utf8)
        request.header.id = nextRequestID
        nextRequestID += 1
        try member.propose([try request.serializedBytes()])
        try runCycles()
        guard case .put(let response) = try #require(results[request.header.id]).get() else {
            throw UnexpectedResponse(description: "not a put")
        }
        return response.header.revision
    }

    func crash() throws {
        try member.close()
    }
}

@Suite("Raft member: WAL, snapshots and the backend across restarts")
struct RaftMemberTests {
    /// What the store must hold: per key the value, version and mod revision.
    struct Model {
        var keys: [String: (value: String, version: Int64, modRevision: Int64)] = [:]
        var revision: Int64 = 1

        mutating func put(_ key: String, _ value: String) {
            revision += 1
            keys[key] = (value, (keys[key]?.version ?? 0) + 1, revision)
        }

        func check(_ replica: Replica, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(replica.store.currentRevision == revision, sourceLocation: sourceLocation)
            for (key, expected) in keys {
                var request = Etcdserverpb_RangeRequest()
                request.key = Data(key.utf8)
                let kv = try #require(try replica.range(request).kvs.first, "key \(key) is missing", sourceLocation: sourceLocation)
                #expect(String(decoding: kv.value, as: UTF8.self) == expected.value, sourceLocation: sourceLocation)
                #expect(kv.version == expected.version, "version of \(key)", sourceLocation: sourceLocation)
                #expect(kv.modRevision == expected.modRevision, "mod revision of \(key)", sourceLocation: sourceLocation)
            }
        }
    }

    static func snapshotFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory + "/member/snap").filter { $0.hasSuffix(".snap") }
    }

    @Test("a restart from the newest snapshot and a long WAL tail applies every entry exactly once")
    func snapshotAndLongTail() throws {
        try withTemporaryDirectory { directory in
            var model = Model()
            do {
                let node = try TestMember(directory: directory, snapshotCount: 10)
                for index in 0..<35 {
                    let revision = try node.put("k\(index % 10)", "v\(index)")
                    model.put("k\(index % 10)", "v\(index)")
                    #expect(revision == model.revision)
                }
                #expect(node.member.snapshotIndex > 20, "snapshots were taken")
                #expect(try Self.snapshotFiles(directory).count == 2, "--max-snapshots purges the older ones")
                try node.crash()
            }
            do {
                // No snapshot is due for the rest: 60 entries that reach the WAL but never a
                // backend commit.
                let node = try TestMember(directory: directory, snapshotCount: 1_000, firstRequestID: 1_000)
                try model.check(node.replica)
                let committed = node.replica.committedIndex
                for index in 0..<60 {
                    try node.put("k\(index % 7)", "tail\(index)")
                    model.put("k\(index % 7)", "tail\(index)")
                }
                #expect(node.replica.committedIndex == committed, "the tail stays out of the backend")
                try node.crash()
            }
            let node = try TestMember(directory: directory, snapshotCount: 1_000, firstRequestID: 2_000)
            try model.check(node.replica)
            #expect(node.replica.appliedIndex == node.member.committedIndex)
            // And it goes on from there.
            model.put("after", "restart")
            #expect(try node.put("after", "restart") == model.revision)
            try node.crash()
        }
    }

    @Test("a lone leader answers ReadIndex from memory when idle, and not while a proposal is pending")
    func immediateReadIndex() throws {
        try withTemporaryDirectory { directory in
            let node = try TestMember(directory: directory, snapshotCount: 100)
            try node.put("a", "1")
            let index = try #require(node.member.immediateReadIndex(context: [1]))
            #expect(index == node.member.committedIndex)
            #expect(index == node.replica.appliedIndex)
            // With a proposal not yet through a Ready cycle, the owner's loop must answer instead.
            try node.member.propose([[]])
            #expect(node.member.immediateReadIndex(context: [2]) == nil)
            try node.runCycles()
            #expect(node.member.immediateReadIndex(context: [3]) == node.replica.appliedIndex)
            try node.crash()
        }
    }

    @Test("a WAL that is missing while the backend has data is refused, naming the WAL directory")
    func missingWAL() throws {
        try withTemporaryDirectory { directory in
            do {
                let node = try TestMember(directory: directory, snapshotCount: 100)
                try node.put("a", "1")
                try node.replica.commitBackend(durably: true)
                try node.crash()
            }
            try FileManager.default.removeItem(atPath: directory + "/member/wal")
            let error = try #require(throws: MemberError.self) { _ = try TestMember(directory: directory, snapshotCount: 100) }
            guard case .inconsistent(let reason) = error else { throw error }
            #expect(reason.contains("member/wal"))
        }
    }

    @Test("a backend older than the newest snapshot is refused: the entries in between are gone")
    func backendBehindSnapshot() throws {
        try withTemporaryDirectory { directory in
            do {
                let node = try TestMember(directory: directory, snapshotCount: 5)
                for index in 0..<20 { try node.put("k\(index)", "v") }
                try node.crash()
            }
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: directory + "/member/db.sqlite" + suffix)
            }
            let error = try #require(throws: MemberError.self) { _ = try TestMember(directory: directory, snapshotCount: 5) }
            // The server installs a leader's stored image in this case, if it has one.
            guard case .backendBehindSnapshot(let index, _, let applied) = error else { throw error }
            #expect(index > 0 && applied == 0)
            #expect(error.description.contains("newest snapshot"))
        }
    }
}
