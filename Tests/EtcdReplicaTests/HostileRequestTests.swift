import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Foundation
import SwiftProtobuf
import Testing

/// Requests an attacker (or a buggy client) can send that once stopped the member: each must be
/// refused before the log, or applied without trapping, and never leave an entry in the WAL
/// that apply cannot read.
@Suite("Hostile requests at the replica")
struct HostileRequestTests {
    /// A txn nested `depth` levels deep (the outermost counts as 1), with one put at the bottom.
    private func nestedTxn(depth: Int) -> Etcdserverpb_TxnRequest {
        var txn = txnRequest(success: [op(putRequest("deep", "value"))])
        for _ in 1..<depth {
            txn = txnRequest(success: [op(txn)])
        }
        return txn
    }

    @Test("a txn nested deeper than 32 levels is refused as too many operations; 32 levels pass and apply")
    func nestingDepth() throws {
        let limit = RequestValidation.maxTxnNestingDepth
        #expect(limit == 32)
        #expect(throws: EtcdError.tooManyOperations) {
            try RequestValidation.check(nestedTxn(depth: limit + 1), maxOperations: 1_000)
        }
        #expect(throws: EtcdError.tooManyOperations) {
            try RequestValidation.check(nestedTxn(depth: 49), maxOperations: 1_000)
        }
        let deepest = nestedTxn(depth: limit)
        try RequestValidation.check(deepest, maxOperations: 1_000)
        let replica = try TestReplica()
        let response = try replica.txn(deepest)
        #expect(response.succeeded)
        #expect(try replica.get("deep").value == data("value"))
    }

    @Test("apply decodes log entries with room above anything gRPC's ingress can decode")
    func applyDecodesWhatIngressAccepts() throws {
        // The deepest txn a client can get past SwiftProtobuf's default limit at ingress.
        var depth = 1
        while (try? Etcdserverpb_TxnRequest(serializedBytes: nestedTxn(depth: depth + 1).serializedBytes() as [UInt8]))
            != nil
        {
            depth += 1
        }
        #expect(depth > RequestValidation.maxTxnNestingDepth)
        // Apply's options accept that depth inside a log entry with a margin of ten more levels,
        // so no validated request can become an entry that stops the member at apply.
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.txn = nestedTxn(depth: depth + 10)
        let encoded: [UInt8] = try entry.serializedBytes()
        #expect(throws: (any Error).self) { try Etcdserverpb_InternalRaftRequest(serializedBytes: encoded) }
        #expect(try InternalRequestCoding.decode(encoded).txn == entry.txn)
    }

    @Test("a range with limit Int64.max returns every key with more=false, alone and inside a writing txn")
    func maximalLimit() throws {
        let replica = try TestReplica()
        for key in ["a", "b", "c"] { try replica.put(key, key) }
        let plain = try replica.range(rangeRequest("a", end: "z", limit: .max))
        #expect(keys(plain.kvs) == ["a", "b", "c"])
        #expect(!plain.more)
        #expect(plain.count == 3)
        // Inside a txn that writes, the range is applied after the WAL sync: a trap there would
        // repeat on every restart.
        let response = try replica.txn(
            txnRequest(success: [op(putRequest("d", "d")), op(rangeRequest("a", end: "z", limit: .max))]))
        let range = try response.range(1)
        #expect(keys(range.kvs) == ["a", "b", "c", "d"])
        #expect(!range.more)
    }

    @Test("extreme revisions and filters get etcd's answers, not traps")
    func extremeIntegers() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        #expect(throws: ReplicaError.request(.futureRevision)) { try replica.range("a", revision: .max) }
        var filtered = rangeRequest("a", end: "z", limit: .min)
        filtered.minModRevision = .min
        filtered.maxModRevision = .max
        filtered.minCreateRevision = .max
        #expect(try replica.range(filtered).kvs.isEmpty)
        // A negative revision reads the current one, as in etcd.
        #expect(keys(try replica.range("a", revision: .min).kvs) == ["a"])
        let compacted = try replica.applyEntries([{
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.compaction = compactionRequest(.max)
            return entry
        }()])
        #expect(throws: ReplicaError.request(.futureRevision)) { try compacted[0].get() }
    }

    @Test("put with ignore_lease on a key whose lease is gone answers lease-not-found, alone or in a txn")
    func ignoreLeaseOfMissingLease() throws {
        try withTemporaryDirectory { directory in
            do {
                let replica = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
                try replica.grant(7, ttl: 60)
                try replica.put("held", "v", lease: 7)
                // Damage: the lease's row is lost, the key still names it (an orphan, which the
                // replica reports at open and used to trap on).
                try replica.store.backend.execute("DELETE FROM lease WHERE id = 7")
            }
            let replica = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
            var keep = putRequest("held", "new")
            keep.ignoreLease = true
            #expect(throws: ReplicaError.request(.leaseNotFound)) { try replica.put(keep) }
            #expect(throws: ReplicaError.request(.leaseNotFound)) { try replica.txn(txnRequest(success: [op(keep)])) }
            #expect(try replica.get("held").value == data("v"))
            // The member goes on serving writes.
            try replica.put("other", "ok")
            #expect(try replica.get("other").value == data("ok"))
        }
    }
}
