import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdReplica
import Foundation
import Testing

@Suite("Put")
struct PutTests {
    @Test("a new key gets the next revision as create and mod revision, and version 1")
    func newKey() throws {
        let replica = try TestReplica()
        let response = try replica.put("a", "1")
        #expect(response.header.revision == 2)
        #expect(!response.hasPrevKv)

        let kv = try replica.get("a")
        #expect(kv.value == data("1"))
        #expect(kv.createRevision == 2)
        #expect(kv.modRevision == 2)
        #expect(kv.version == 1)
        #expect(replica.store.currentRevision == 2)
    }

    @Test("an overwrite keeps the create revision and bumps the version")
    func overwrite() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        try replica.put("b", "1")
        let response = try replica.put("a", "2")
        #expect(response.header.revision == 4)

        let kv = try replica.get("a")
        #expect(kv.value == data("2"))
        #expect(kv.createRevision == 2)
        #expect(kv.modRevision == 4)
        #expect(kv.version == 2)
    }

    @Test("prev_kv returns the pair the put replaced, and nothing for a new key")
    func prevKV() throws {
        let replica = try TestReplica()
        let first = try replica.put("a", "1", prevKV: true)
        #expect(!first.hasPrevKv)

        let second = try replica.put("a", "2", prevKV: true)
        let previous = try #require(second.hasPrevKv ? second.prevKv : nil)
        #expect(previous.key == data("a"))
        #expect(previous.value == data("1"))
        #expect(previous.modRevision == 2)
        #expect(previous.version == 1)

        let third = try replica.put("a", "3")
        #expect(!third.hasPrevKv)
    }

    @Test("ignore_value or ignore_lease on a missing key is key-not-found and writes nothing")
    func ignoreOnMissingKey() throws {
        let replica = try TestReplica()
        try replica.put("other", "1")

        var ignoreValue = putRequest("a")
        ignoreValue.ignoreValue = true
        #expect(throws: ReplicaError.request(.keyNotFound)) { try replica.put(ignoreValue) }

        var ignoreLease = putRequest("a", "1")
        ignoreLease.ignoreLease = true
        #expect(throws: ReplicaError.request(.keyNotFound)) { try replica.put(ignoreLease) }

        #expect(replica.store.currentRevision == 2)
        #expect(try replica.range("a").kvs.isEmpty)
    }

    @Test("ignore_value keeps the old value and still makes a new version")
    func ignoreValueKeepsValue() throws {
        let replica = try TestReplica()
        try replica.put("a", "old")
        var request = putRequest("a")
        request.ignoreValue = true
        request.prevKv = true
        let response = try replica.put(request)
        #expect(response.header.revision == 3)
        #expect(response.prevKv.value == data("old"))

        let kv = try replica.get("a")
        #expect(kv.value == data("old"))
        #expect(kv.version == 2)
        #expect(kv.modRevision == 3)
        #expect(kv.createRevision == 2)
    }

    @Test("a lease the member does not know is lease-not-found and writes nothing")
    func unknownLease() throws {
        let replica = try TestReplica()
        #expect(throws: ReplicaError.request(.leaseNotFound)) { try replica.put(putRequest("a", "1", lease: 42)) }
        #expect(replica.store.currentRevision == 1)
        #expect(try replica.range("a").kvs.isEmpty)
    }

    @Test("an empty value is a value like any other")
    func emptyValue() throws {
        let replica = try TestReplica()
        try replica.put("a", "")
        let kv = try replica.get("a")
        #expect(kv.value.isEmpty)
        #expect(kv.version == 1)
    }
}

@Suite("Put with leases (applier)")
struct PutLeaseTests {
    /// An applier on a fresh store that knows exactly the leases in `leases`.
    private func applier(leases: Set<Int64>) throws -> KVApplier {
        let lessor = Lessor(configuration: .init(minTTLSeconds: 2))
        for lease in leases { _ = try lessor.grant(LeaseID(lease), ttl: 60, now: .zero) }
        return try KVApplier(store: MVCCStore(backend: Backend(path: nil)), lessor: lessor)
    }

    /// Runs `body` in one batch, as the replica does for every proposal.
    private func inBatch<Result>(_ store: MVCCStore, _ body: () throws -> Result) throws -> Result {
        try store.beginBatch()
        do {
            let result = try body()
            try store.commitBatch()
            return result
        } catch {
            store.abortBatch()
            throw error
        }
    }

    @Test("a known lease is stored with the key")
    func knownLease() throws {
        let applier = try applier(leases: [7])
        try inBatch(applier.store) { _ = try applier.put(putRequest("a", "1", lease: 7)) }
        let kv = try #require(try applier.range(rangeRequest("a"), in: applier.store).kvs.first)
        #expect(kv.lease == 7)
    }

    @Test("ignore_lease keeps the old lease, and a plain put drops it")
    func ignoreLeaseKeepsLease() throws {
        let applier = try applier(leases: [7])
        var keepLease = putRequest("a", "2")
        keepLease.ignoreLease = true
        try inBatch(applier.store) {
            _ = try applier.put(putRequest("a", "1", lease: 7))
            _ = try applier.put(keepLease)
        }
        let kept = try #require(try applier.range(rangeRequest("a"), in: applier.store).kvs.first)
        #expect(kept.lease == 7)
        #expect(kept.value == data("2"))
        #expect(kept.version == 2)

        try inBatch(applier.store) { _ = try applier.put(putRequest("a", "3")) }
        let dropped = try #require(try applier.range(rangeRequest("a"), in: applier.store).kvs.first)
        #expect(dropped.lease == 0)
    }

    @Test("a txn compares on the lease")
    func compareLease() throws {
        let applier = try applier(leases: [7])
        try inBatch(applier.store) { _ = try applier.put(putRequest("a", "1", lease: 7)) }
        let holds = try inBatch(applier.store) {
            try applier.txn(txnRequest(compare: [compare("a", .lease, .equal, .lease(7))])).succeeded
        }
        #expect(holds)
        let fails = try inBatch(applier.store) {
            try applier.txn(txnRequest(compare: [compare("a", .lease, .less, .lease(7))])).succeeded
        }
        #expect(!fails)
    }

    @Test("a txn put with an unknown lease fails the whole txn")
    func txnUnknownLease() throws {
        let applier = try applier(leases: [7])
        let request = txnRequest(success: [op(putRequest("a", "1", lease: 7)), op(putRequest("b", "1", lease: 8))])
        #expect(throws: ReplicaError.request(.leaseNotFound)) {
            try inBatch(applier.store) { try applier.txn(request) }
        }
        #expect(applier.store.currentRevision == 1)
    }
}

@Suite("DeleteRange")
struct DeleteRangeTests {
    private func fixture() throws -> TestReplica {
        let replica = try TestReplica()
        for key in ["a", "b", "c", "d"] { try replica.put(key, "v-" + key) }  // 2...5
        return replica
    }

    @Test("deleting one key counts it and takes a new revision")
    func single() throws {
        let replica = try fixture()
        let response = try replica.delete("b")
        #expect(response.deleted == 1)
        #expect(response.header.revision == 6)
        #expect(response.prevKvs.isEmpty)
        #expect(try replica.range("b").kvs.isEmpty)
        #expect(keys(try replica.range("\0", end: "\0").kvs) == ["a", "c", "d"])
    }

    @Test("a range delete removes every key in it at one revision and returns prev_kvs in key order")
    func rangeWithPrevKVs() throws {
        let replica = try fixture()
        let response = try replica.delete("b", end: "d", prevKV: true)
        #expect(response.deleted == 2)
        #expect(response.header.revision == 6)
        #expect(keys(response.prevKvs) == ["b", "c"])
        #expect(response.prevKvs.map(\.value) == [data("v-b"), data("v-c")])
        #expect(response.prevKvs.map(\.modRevision) == [3, 4])
        #expect(replica.store.currentRevision == 6)
        #expect(keys(try replica.range("\0", end: "\0").kvs) == ["a", "d"])
    }

    @Test("a from-key delete removes every key from key on")
    func fromKey() throws {
        let replica = try fixture()
        let response = try replica.delete("b", end: "\0")
        #expect(response.deleted == 3)
        #expect(keys(try replica.range("\0", end: "\0").kvs) == ["a"])
    }

    @Test("deleting nothing leaves the revision where it was")
    func nothing() throws {
        let replica = try fixture()
        let response = try replica.delete("x", end: "z", prevKV: true)
        #expect(response.deleted == 0)
        #expect(response.prevKvs.isEmpty)
        #expect(response.header.revision == 5)
        #expect(replica.store.currentRevision == 5)
        #expect(try replica.put("e").header.revision == 6)
    }

    @Test("a key put again after a delete starts a new generation")
    func recreate() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        try replica.put("a", "2")  // 3
        try replica.delete("a")  // 4
        try replica.put("a", "3")  // 5
        let kv = try replica.get("a")
        #expect(kv.createRevision == 5)
        #expect(kv.modRevision == 5)
        #expect(kv.version == 1)
    }
}
