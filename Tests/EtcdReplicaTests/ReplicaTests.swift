import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Foundation
import Logging
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
        case .failure: return nil
        }
    }

    @Test("a new replica starts at applied index 0 and term 1")
    func fresh() throws {
        let replica = try TestReplica()
        #expect(replica.replica.appliedIndex == 0)
        #expect(replica.replica.term == 1)
    }

    @Test("propose answers every request of a batch, in order")
    func order() throws {
        let replica = try TestReplica()
        let results = replica.replica.propose([
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
        _ = replica.replica.propose([raftPut("a"), raftPut("b")])
        #expect(replica.replica.appliedIndex == 2)
        _ = replica.replica.propose([raftPut("missing", ignoreValue: true)])
        #expect(replica.replica.appliedIndex == 3)
        _ = replica.replica.propose([])
        #expect(replica.replica.appliedIndex == 3)
        try replica.put("c")
        #expect(replica.replica.appliedIndex == 4)
        #expect(try replica.store.meta("consistent_index") == 4)
    }

    @Test("a request error in a batch fails that request alone")
    func errorInBatch() throws {
        let replica = try TestReplica()
        let results = replica.replica.propose([
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
                _ = replica.replica.propose([raftPut("a", "1"), raftPut("b", "1")])
                _ = replica.replica.propose([raftPut("a", "2"), raftDelete("b"), raftCompaction(2)])
                #expect(replica.replica.appliedIndex == 5)
            }

            let reopened = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
            #expect(reopened.replica.appliedIndex == 5)
            #expect(try reopened.store.meta("term") == 1)
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

    @Test("a read-only txn through the log still takes an index but no revision")
    func readOnlyTxnInLog() throws {
        let replica = try TestReplica()
        try replica.put("a")
        let results = replica.replica.propose([raftTxn(txnRequest(success: [op(rangeRequest("a"))]))])
        #expect(results.map(revision) == [2])
        #expect(replica.replica.appliedIndex == 2)
        #expect(replica.store.currentRevision == 2)
    }
}
