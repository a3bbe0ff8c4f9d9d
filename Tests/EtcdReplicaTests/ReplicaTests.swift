import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

@Suite("Replica")
struct ReplicaTests {
    private func raftPut(_ key: String, _ value: String = "", ignoreValue: Bool = false)
        -> Etcdserverpb_InternalRaftRequest
    {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.put = putRequest(key, value)
        raft.put.ignoreValue = ignoreValue
        return raft
    }

    private func raftDelete(_ key: String, end: String = "") -> Etcdserverpb_InternalRaftRequest {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.deleteRange = deleteRequest(key, end: end)
        return raft
    }

    private func raftTxn(_ request: Etcdserverpb_TxnRequest) -> Etcdserverpb_InternalRaftRequest {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.txn = request
        return raft
    }

    private func raftCompaction(_ revision: Int64) -> Etcdserverpb_InternalRaftRequest {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.compaction = compactionRequest(revision)
        return raft
    }

    /// The header revision of a successful result, or nil.
    private func revision(_ result: Result<ApplyResponse, ReplicaError>) -> Int64? {
        switch result {
        case .success(.put(let response)): return response.header.revision
        case .success(.deleteRange(let response)): return response.header.revision
        case .success(.txn(let response)): return response.header.revision
        case .success(.compaction(let response)): return response.header.revision
        case .success(.leaseGrant(let response)): return response.header.revision
        case .success(.leaseRevoke(let response)): return response.header.revision
        case .success(.leaseCheckpoint(let response)): return response.header.revision
        case .success(.alarm(let response)): return response.header.revision
        case .success(.auth(let response)): return (response as? any AuthResponseWithHeader)?.header.revision
        case .success(.membership), .success(.membershipChanged), .failure: return nil
        }
    }

    @Test("a new replica starts at applied index 0")
    func fresh() throws {
        let replica = try TestReplica()
        #expect(replica.replica.appliedIndex == 0)
        #expect(replica.replica.appliedTerm == 0)
        #expect(replica.replica.committedIndex == 0)
    }

    @Test("apply answers every request of a batch, in order")
    func order() throws {
        let replica = try TestReplica()
        let results = try replica.applyEntries([
            raftPut("a", "1"),
            raftPut("b", "1"),
            raftDelete("a"),
            raftTxn(txnRequest(success: [op(putRequest("c"))])),
            raftCompaction(3),
        ])
        #expect(results.count == 5)
        #expect(results.map(revision) == [2, 3, 4, 5, 5])
        guard results.count == 5 else { return }
        guard case .success(.put) = results[0], case .success(.put) = results[1],
            case .success(.deleteRange(let delete)) = results[2], case .success(.txn(let txn)) = results[3],
            case .success(.compaction) = results[4]
        else {
            Issue.record("results of the wrong kinds: \(results)")
            return
        }
        #expect(delete.deleted == 1)
        #expect(txn.succeeded)
        #expect(replica.replica.appliedIndex == 5)
        #expect(keys(try replica.range("\0", end: "\0").kvs) == ["b", "c"])
    }

    @Test("the applied index counts every entry, failed requests included")
    func appliedIndex() throws {
        let replica = try TestReplica()
        _ = try replica.applyEntries([raftPut("a"), raftPut("b")])
        #expect(replica.replica.appliedIndex == 2)
        _ = try replica.applyEntries([raftPut("missing", ignoreValue: true)])
        #expect(replica.replica.appliedIndex == 3)
        _ = try replica.applyEntries([])
        #expect(replica.replica.appliedIndex == 3)
        try replica.put("c")
        #expect(replica.replica.appliedIndex == 4)
        #expect(try replica.store.meta("consistent_index") == 4)
    }

    @Test("a request error in a batch fails that request alone")
    func errorInBatch() throws {
        let replica = try TestReplica()
        let results = try replica.applyEntries([
            raftPut("a", "1"),
            raftPut("missing", ignoreValue: true),
            raftPut("c", "1"),
            raftCompaction(99),
            raftTxn(txnRequest(success: [op(putRequest("d")), op(rangeRequest("a", revision: 99))])),
            raftDelete("a"),
        ])
        #expect(results.count == 6)
        guard results.count == 6 else { return }
        #expect(revision(results[0]) == 2)
        #expect(throws: ReplicaError.request(.keyNotFound)) { try results[1].get() }
        // A failed request takes no revision.
        #expect(revision(results[2]) == 3)
        #expect(throws: ReplicaError.request(.futureRevision)) { try results[3].get() }
        #expect(throws: ReplicaError.request(.futureRevision)) { try results[4].get() }
        #expect(revision(results[5]) == 4)

        #expect(replica.replica.appliedIndex == 6)
        #expect(replica.store.currentRevision == 4)
        #expect(keys(try replica.range("\0", end: "\0").kvs) == ["c"])
        #expect(try replica.range("a", revision: 2).kvs.map(\.value) == [data("1")])
    }

    @Test("the applied index and the data survive reopening the store")
    func persisted() throws {
        try withTemporaryDirectory { directory in
            do {
                let replica = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
                _ = try replica.applyEntries([raftPut("a", "1"), raftPut("b", "1")])
                _ = try replica.applyEntries([raftPut("a", "2"), raftDelete("b"), raftCompaction(2)])
                #expect(replica.replica.appliedIndex == 5)
            }

            let reopened = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
            #expect(reopened.replica.appliedIndex == 5)
            #expect(try reopened.store.meta("term") == 2)
            #expect(reopened.store.currentRevision == 5)
            #expect(reopened.store.compactedRevision == 2)
            let a = try reopened.get("a")
            #expect(a.value == data("2"))
            #expect(a.version == 2)
            #expect(a.createRevision == 2)
            #expect(try reopened.range("b").count == 0)
            #expect(throws: ReplicaError.request(.compacted)) { try reopened.range("a", revision: 1) }

            // The log continues from the persisted index.
            try reopened.put("c")
            #expect(reopened.replica.appliedIndex == 6)
            #expect(try reopened.get("c").modRevision == 6)
        }
    }

    /// Entries as Raft hands them out: `requests` at consecutive indexes from `first`.
    private func entries(_ requests: [Etcdserverpb_InternalRaftRequest], from first: UInt64, idBase: UInt64 = 100)
        throws -> [Entry]
    {
        try requests.enumerated().map { offset, request in
            var request = request
            request.header.id = idBase + UInt64(offset)
            return Entry(term: 2, index: first + UInt64(offset), data: try request.serializedBytes())
        }
    }

    @Test("entries the backend already holds are skipped when Raft hands them out again after a restart")
    func replaySkipsApplied() throws {
        try withTemporaryDirectory { directory in
            let log = try entries([raftPut("a", "1"), raftPut("a", "2"), raftPut("b", "1"), raftDelete("b")], from: 1)
            do {
                let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
                _ = try replica.apply(log[0..<2])
                try replica.commitBackend(durably: true)
            }
            let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
            #expect(replica.appliedIndex == 2)
            // The whole log again, as after a restart without a snapshot: only 3 and 4 apply.
            let results = try replica.apply(log)
            #expect(results.map(\.requestID) == [102, 103])
            #expect(replica.appliedIndex == 4)
            #expect(replica.store.currentRevision == 5)
            let a = try #require(try replica.range(rangeRequest("a")).kvs.first)
            #expect(a.version == 2, "a was put twice, not four times")
            // Handing out what is already applied changes nothing.
            #expect(try replica.apply(log).isEmpty)
            #expect(replica.store.currentRevision == 5)
        }
    }

    @Test("Raft's empty entries and membership changes advance the applied index without results")
    func emptyAndConfChangeEntries() throws {
        let replica = try TestReplica()
        let change = ConfChange(kind: .addNode, nodeID: NodeID(1))
        var log = [
            Entry(term: 1, index: 1, type: .confChange, data: change.encoded()),
            Entry(term: 2, index: 2, data: []),
        ]
        log += try entries([raftPut("a")], from: 3)
        let results = try replica.replica.apply(log)
        #expect(results.map(\.requestID) == [100])
        #expect(replica.replica.appliedIndex == 3)
        #expect(replica.replica.appliedTerm == 2)
        #expect(replica.store.currentRevision == 2)
    }

    @Test("applied entries not yet committed to the backend are gone after a crash, and apply again")
    func uncommittedBatchIsReplayed() throws {
        try withTemporaryDirectory { directory in
            let log = try entries([raftPut("a", "1"), raftPut("b", "1"), raftPut("c", "1")], from: 1)
            do {
                let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
                _ = try replica.apply(log[0..<1])
                try replica.commitBackend(durably: false)
                _ = try replica.apply(log[1...])
                #expect(replica.appliedIndex == 3)
                #expect(replica.committedIndex == 1)
                // Reads see applied entries before the backend commits them.
                #expect(try replica.range(rangeRequest("c")).count == 1)
                // No commit: the process "crashes" here.
            }
            let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
            #expect(replica.appliedIndex == 1)
            #expect(try replica.range(rangeRequest("b")).count == 0)
            #expect(try replica.apply(log).map(\.requestID) == [101, 102])
            try replica.commitBackend(durably: true)
            #expect(replica.committedIndex == 3)
            #expect(try replica.range(rangeRequest("a", end: "d")).count == 3)
        }
    }

    @Test("a backend failure while applying rolls back to the last commit and throws")
    func backendFailure() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        try replica.store.backend.execute(
            "CREATE TRIGGER injected BEFORE INSERT ON kv BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        let log = try entries([raftPut("b", "1"), raftPut("c", "1")], from: 2)
        #expect {
            _ = try replica.replica.apply(log)
        } throws: { error in
            guard case .storage(let reason) = error as? ReplicaError else { return false }
            return reason.contains("injected failure")
        }
        #expect(replica.replica.appliedIndex == 1)
        #expect(replica.store.currentRevision == 2)
        // Once the fault is gone, the same entries apply (as on the restart that follows).
        try replica.store.backend.execute("DROP TRIGGER injected")
        #expect(try replica.replica.apply(log).count == 2)
        #expect(replica.store.currentRevision == 4)
    }

    @Test("an entry that does not decode stops the member instead of being skipped")
    func undecodableEntry() throws {
        let replica = try TestReplica()
        let garbage = Entry(term: 2, index: 1, data: [0xff, 0xff, 0xff])
        #expect(throws: ReplicaError.self) { _ = try replica.replica.apply([garbage]) }
        #expect(replica.replica.appliedIndex == 0)
    }

    @Test("a read-only txn through the log still takes an index but no revision")
    func readOnlyTxnInLog() throws {
        let replica = try TestReplica()
        try replica.put("a")
        let results = try replica.applyEntries([raftTxn(txnRequest(success: [op(rangeRequest("a"))]))])
        #expect(results.map(revision) == [2])
        #expect(replica.replica.appliedIndex == 2)
        #expect(replica.store.currentRevision == 2)
    }
}
