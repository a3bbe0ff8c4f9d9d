import EtcdAPI
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Foundation
import Testing

@Suite("Txn")
struct TxnTests {
    // MARK: Compares

    struct CompareCase: Sendable, CustomTestStringConvertible {
        var target: Etcdserverpb_Compare.CompareTarget
        var result: Etcdserverpb_Compare.CompareResult
        var operand: Etcdserverpb_Compare.OneOf_TargetUnion
        var holds: Bool
        var testDescription: String { "\(target) \(result) \(operand): \(holds)" }
    }

    /// Against key k with value "v2", version 2, create revision 2, mod revision 3, no lease.
    static let existingKeyCases: [CompareCase] = [
        CompareCase(target: .value, result: .equal, operand: .value(data("v2")), holds: true),
        CompareCase(target: .value, result: .equal, operand: .value(data("v1")), holds: false),
        CompareCase(target: .value, result: .notEqual, operand: .value(data("v1")), holds: true),
        CompareCase(target: .value, result: .notEqual, operand: .value(data("v2")), holds: false),
        CompareCase(target: .value, result: .greater, operand: .value(data("v1")), holds: true),
        CompareCase(target: .value, result: .greater, operand: .value(data("v")), holds: true),
        CompareCase(target: .value, result: .greater, operand: .value(data("v3")), holds: false),
        CompareCase(target: .value, result: .less, operand: .value(data("v3")), holds: true),
        CompareCase(target: .value, result: .less, operand: .value(data("v2")), holds: false),
        CompareCase(target: .value, result: .less, operand: .value(Data([0xff])), holds: true),
        CompareCase(target: .version, result: .equal, operand: .version(2), holds: true),
        CompareCase(target: .version, result: .equal, operand: .version(1), holds: false),
        CompareCase(target: .version, result: .notEqual, operand: .version(2), holds: false),
        CompareCase(target: .version, result: .greater, operand: .version(1), holds: true),
        CompareCase(target: .version, result: .greater, operand: .version(2), holds: false),
        CompareCase(target: .version, result: .less, operand: .version(3), holds: true),
        CompareCase(target: .version, result: .less, operand: .version(2), holds: false),
        CompareCase(target: .create, result: .equal, operand: .createRevision(2), holds: true),
        CompareCase(target: .create, result: .notEqual, operand: .createRevision(3), holds: true),
        CompareCase(target: .create, result: .greater, operand: .createRevision(2), holds: false),
        CompareCase(target: .create, result: .greater, operand: .createRevision(1), holds: true),
        CompareCase(target: .create, result: .less, operand: .createRevision(3), holds: true),
        CompareCase(target: .mod, result: .equal, operand: .modRevision(3), holds: true),
        CompareCase(target: .mod, result: .equal, operand: .modRevision(2), holds: false),
        CompareCase(target: .mod, result: .notEqual, operand: .modRevision(3), holds: false),
        CompareCase(target: .mod, result: .greater, operand: .modRevision(2), holds: true),
        CompareCase(target: .mod, result: .less, operand: .modRevision(3), holds: false),
        CompareCase(target: .mod, result: .less, operand: .modRevision(4), holds: true),
        CompareCase(target: .lease, result: .equal, operand: .lease(0), holds: true),
        CompareCase(target: .lease, result: .notEqual, operand: .lease(5), holds: true),
        CompareCase(target: .lease, result: .greater, operand: .lease(0), holds: false),
        CompareCase(target: .lease, result: .less, operand: .lease(1), holds: true),
    ]

    @Test("a compare on an existing key checks its value, version, create, mod revision or lease",
        arguments: existingKeyCases)
    func compareExisting(compareCase: CompareCase) throws {
        let replica = try TestReplica()
        try replica.put("k", "v1")  // 2
        try replica.put("k", "v2")  // 3
        let request = txnRequest(
            compare: [compare("k", compareCase.target, compareCase.result, compareCase.operand)],
            success: [op(rangeRequest("then"))],
            failure: [op(rangeRequest("else"))]
        )
        let response = try replica.txn(request)
        #expect(response.succeeded == compareCase.holds)
        #expect(response.responses.count == 1)
    }

    /// A missing key compares as a zero pair, except that a value compare always fails.
    static let missingKeyCases: [CompareCase] = [
        CompareCase(target: .version, result: .equal, operand: .version(0), holds: true),
        CompareCase(target: .version, result: .greater, operand: .version(0), holds: false),
        CompareCase(target: .create, result: .equal, operand: .createRevision(0), holds: true),
        CompareCase(target: .create, result: .less, operand: .createRevision(1), holds: true),
        CompareCase(target: .mod, result: .equal, operand: .modRevision(0), holds: true),
        CompareCase(target: .mod, result: .notEqual, operand: .modRevision(0), holds: false),
        CompareCase(target: .lease, result: .equal, operand: .lease(0), holds: true),
        CompareCase(target: .lease, result: .less, operand: .lease(1), holds: true),
        CompareCase(target: .value, result: .equal, operand: .value(Data()), holds: false),
        CompareCase(target: .value, result: .notEqual, operand: .value(data("x")), holds: false),
        CompareCase(target: .value, result: .less, operand: .value(data("x")), holds: false),
    ]

    @Test("a compare on a missing key is against zero, and a value compare on it always fails",
        arguments: missingKeyCases)
    func compareMissing(compareCase: CompareCase) throws {
        let replica = try TestReplica()
        try replica.put("other", "v")
        let request = txnRequest(compare: [compare("k", compareCase.target, compareCase.result, compareCase.operand)])
        #expect(try replica.txn(request).succeeded == compareCase.holds)
    }

    @Test("a compare over a range holds only if every key in it satisfies it")
    func compareRange() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        try replica.put("b", "1")
        try replica.put("b", "2")  // a version 1, b version 2
        try replica.put("c", "1")

        func holds(_ compare: Etcdserverpb_Compare) throws -> Bool {
            try replica.txn(txnRequest(compare: [compare])).succeeded
        }
        #expect(try holds(compare("a", end: "c", .version, .greater, .version(0))))
        #expect(try !holds(compare("a", end: "c", .version, .equal, .version(1))))
        #expect(try holds(compare("a", end: "b", .version, .equal, .version(1))))
        #expect(try holds(compare("a", end: "\0", .create, .greater, .createRevision(1))))
        #expect(try !holds(compare("a", end: "\0", .value, .equal, .value(data("1")))))
        // An empty range compares like a missing key.
        #expect(try holds(compare("x", end: "z", .version, .equal, .version(0))))
        #expect(try !holds(compare("x", end: "z", .value, .equal, .value(Data()))))
    }

    @Test("every compare must hold for the success branch")
    func allCompares() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        let oneFails = txnRequest(compare: [
            compare("a", .value, .equal, .value(data("1"))),
            compare("a", .version, .equal, .version(2)),
        ])
        #expect(try !replica.txn(oneFails).succeeded)
        let allHold = txnRequest(compare: [
            compare("a", .value, .equal, .value(data("1"))),
            compare("a", .version, .equal, .version(1)),
        ])
        #expect(try replica.txn(allHold).succeeded)
        #expect(try replica.txn(txnRequest()).succeeded)
    }

    // MARK: Branches and revisions

    @Test("the chosen branch runs and the other does not")
    func branches() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        let request = txnRequest(
            compare: [compare("a", .value, .equal, .value(data("1")))],
            success: [op(putRequest("then", "t"))],
            failure: [op(putRequest("else", "e")), op(rangeRequest("a"))]
        )
        let success = try replica.txn(request)
        #expect(success.succeeded)
        #expect(success.responses.count == 1)
        #expect(try success.put(0).header.revision == 3)
        #expect(try replica.range("then").count == 1)
        #expect(try replica.range("else").count == 0)

        try replica.put("a", "2")
        let failure = try replica.txn(request)
        #expect(!failure.succeeded)
        #expect(failure.responses.count == 2)
        #expect(try failure.put(0).header.revision == 5)
        #expect(try failure.range(1).kvs.map(\.value) == [data("2")])
        #expect(try replica.range("else").count == 1)
    }

    @Test("all writes of a txn share one main revision, applied in order as sub-revisions")
    func oneRevision() throws {
        let replica = try TestReplica()
        try replica.put("z", "0")  // 2
        let response = try replica.txn(txnRequest(success: [
            op(putRequest("c", "1")), op(putRequest("a", "1")), op(deleteRequest("z")), op(putRequest("b", "1")),
        ]))
        #expect(response.header.revision == 3)
        #expect(try response.put(0).header.revision == 3)
        #expect(try response.deleteRange(2).header.revision == 3)
        #expect(try response.deleteRange(2).deleted == 1)
        #expect(replica.store.currentRevision == 3)
        #expect(try replica.range("\0", end: "\0").kvs.map(\.modRevision) == [3, 3, 3])

        let events = try replica.store.events(from: 3)
        #expect(events.map { String(decoding: $0.kv.key, as: UTF8.self) } == ["c", "a", "z", "b"])
        #expect(events.map(\.kind) == [.put, .put, .delete, .put])
        #expect(try replica.put("d").header.revision == 4)
    }

    @Test("a range in a write txn sees the txn's own earlier writes, at the txn's revision")
    func readYourWrites() throws {
        let replica = try TestReplica()
        try replica.put("k", "old")  // 2
        let response = try replica.txn(txnRequest(success: [
            op(rangeRequest("k")), op(putRequest("k", "new")), op(rangeRequest("k")),
        ]))
        #expect(response.header.revision == 3)
        let before = try response.range(0)
        #expect(before.kvs.map(\.value) == [data("old")])
        #expect(before.header.revision == 2)
        let after = try response.range(2)
        #expect(after.kvs.map(\.value) == [data("new")])
        #expect(after.kvs.map(\.version) == [2])
        #expect(after.header.revision == 3)
    }

    @Test("a delete that removes nothing answers the old revision before any write and the new one after")
    func emptyDeleteInTxn() throws {
        let replica = try TestReplica()
        try replica.put("k", "v")  // 2
        let first = try replica.txn(txnRequest(success: [op(deleteRequest("missing")), op(putRequest("a"))]))
        #expect(try first.deleteRange(0).header.revision == 2)
        #expect(try first.put(1).header.revision == 3)
        #expect(first.header.revision == 3)

        let second = try replica.txn(txnRequest(success: [op(putRequest("b")), op(deleteRequest("missing"))]))
        #expect(try second.deleteRange(1).header.revision == 4)

        let nothing = try replica.txn(txnRequest(success: [op(deleteRequest("missing"))]))
        #expect(nothing.header.revision == 4)
        #expect(replica.store.currentRevision == 4)
    }

    @Test("a nested txn compares against the key space before the outer txn wrote, and its header is empty")
    func nestedComparesBeforeWrites() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let nested = txnRequest(
            compare: [compare("n", .version, .equal, .version(0))],
            success: [op(rangeRequest("n"))],
            failure: [op(rangeRequest("a"))]
        )
        let response = try replica.txn(txnRequest(success: [op(putRequest("n", "1")), op(nested)]))
        #expect(response.header.revision == 3)
        let inner = try response.txn(1)
        #expect(inner.succeeded)
        #expect(inner.header.revision == 0)
        let read = try inner.range(0)
        #expect(keys(read.kvs) == ["n"])
        #expect(read.header.revision == 3)
    }

    @Test("nested txns take their own branches, each decided independently")
    func nestedBranches() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let holds = txnRequest(
            compare: [compare("a", .version, .equal, .version(1))],
            success: [op(putRequest("x", "then"))],
            failure: [op(putRequest("x", "else"))]
        )
        let fails = txnRequest(
            compare: [compare("a", .version, .equal, .version(9))],
            success: [op(putRequest("y", "then"))],
            failure: [op(putRequest("y", "else"))]
        )
        let response = try replica.txn(txnRequest(
            compare: [compare("a", .value, .equal, .value(data("wrong")))],
            success: [op(putRequest("never"))],
            failure: [op(holds), op(fails)]
        ))
        #expect(!response.succeeded)
        #expect(try response.txn(0).succeeded)
        #expect(try !response.txn(1).succeeded)
        #expect(try replica.get("x").value == data("then"))
        #expect(try replica.get("y").value == data("else"))
        #expect(try replica.range("never").count == 0)
        #expect(try replica.get("x").modRevision == 3)
        #expect(try replica.get("y").modRevision == 3)
    }

    @Test("a txn with only reads creates no revision, read directly or through the log")
    func readOnly() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let request = txnRequest(
            compare: [compare("a", .version, .equal, .version(1))],
            success: [op(rangeRequest("a")), op(rangeRequest("\0", end: "\0"))]
        )
        #expect(Replica.isReadOnly(request))

        let direct = try replica.replica.readOnlyTxn(request)
        #expect(direct.succeeded)
        #expect(direct.header.revision == 2)
        #expect(try direct.range(1).count == 1)

        let logged = try replica.txn(request)
        #expect(logged.header.revision == 2)
        #expect(try logged.range(0).header.revision == 2)
        #expect(replica.store.currentRevision == 2)
        #expect(try replica.put("b").header.revision == 3)
    }

    @Test("whether a txn is read-only follows etcd: ranges only, and a nested txn counts as a write")
    func isReadOnly() {
        #expect(Replica.isReadOnly(txnRequest()))
        #expect(Replica.isReadOnly(txnRequest(success: [op(rangeRequest("a"))], failure: [op(rangeRequest("b"))])))
        #expect(!Replica.isReadOnly(txnRequest(success: [op(rangeRequest("a"))], failure: [op(putRequest("b"))])))
        #expect(!Replica.isReadOnly(txnRequest(success: [op(deleteRequest("a"))])))
        #expect(!Replica.isReadOnly(txnRequest(success: [op(txnRequest(success: [op(rangeRequest("a"))]))])))
    }

    // MARK: Whole-txn failures

    @Test("a range at a future revision on the chosen path fails the whole txn")
    func futureRangeFailsWhole() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let request = txnRequest(success: [op(putRequest("b", "1")), op(rangeRequest("a", revision: 3))])
        #expect(throws: ReplicaError.request(.futureRevision)) { try replica.txn(request) }
        #expect(replica.store.currentRevision == 2)
        #expect(try replica.range("b").count == 0)
    }

    @Test("a range at a compacted revision on the chosen path fails the whole txn")
    func compactedRangeFailsWhole() throws {
        let replica = try TestReplica()
        for value in ["1", "2", "3"] { try replica.put("a", value) }  // 2...4
        try replica.compact(3)
        let request = txnRequest(success: [op(putRequest("b", "1")), op(rangeRequest("a", revision: 2))])
        #expect(throws: ReplicaError.request(.compacted)) { try replica.txn(request) }
        #expect(try replica.range("b").count == 0)
        // The compaction point itself is still readable.
        let atPoint = try replica.txn(txnRequest(success: [op(rangeRequest("a", revision: 3))]))
        #expect(try atPoint.range(0).kvs.map(\.value) == [data("2")])
    }

    @Test("a bad range in a nested txn on the chosen path fails the whole txn")
    func futureRangeInNestedFailsWhole() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let nested = txnRequest(success: [op(rangeRequest("a", revision: 9))])
        let request = txnRequest(success: [op(putRequest("b", "1")), op(nested)])
        #expect(throws: ReplicaError.request(.futureRevision)) { try replica.txn(request) }
        #expect(replica.store.currentRevision == 2)
    }

    @Test("a bad range in the branch not taken does not matter")
    func futureRangeInOtherBranch() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let request = txnRequest(
            success: [op(putRequest("b", "1"))],
            failure: [op(rangeRequest("a", revision: 9))]
        )
        #expect(try replica.txn(request).header.revision == 3)
        let nested = txnRequest(
            compare: [compare("a", .version, .equal, .version(7))],
            success: [op(rangeRequest("a", revision: 9))],
            failure: [op(putRequest("c", "1"))]
        )
        #expect(try replica.txn(txnRequest(success: [op(nested)])).header.revision == 4)
    }

    @Test("a negative revision other than -1 is compacted inside a txn, as etcd compares it with -1")
    func negativeRevisionInTxn() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        #expect(throws: ReplicaError.request(.compacted)) {
            try replica.replica.readOnlyTxn(txnRequest(success: [op(rangeRequest("a", revision: -2))]))
        }
    }

    /// etcd checks a txn's ranges with `revision < FirstRev()`, and `FirstRev()` is the
    /// compaction revision, which is -1 until the first compaction: so -1 passes and reads the
    /// current revision. etcd 3.4.23 answered both txns below with the key (HTTP gateway).
    @Test("a range at revision -1 inside a txn on a never-compacted store reads the current revision")
    func minusOneRevisionInTxn() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        let readOnly = try replica.replica.readOnlyTxn(txnRequest(success: [op(rangeRequest("a", revision: -1))]))
        #expect(try readOnly.range(0).kvs.map(\.value) == [data("1")])
        let write = try replica.txn(txnRequest(success: [op(rangeRequest("a", revision: -1)), op(putRequest("b"))]))
        #expect(try write.range(0).kvs.map(\.value) == [data("1")])
        #expect(write.header.revision == 3)
    }

    @Test("an ignore_value put on a missing key fails the whole txn before anything is written")
    func ignoreValueOnMissingFailsWhole() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        var keep = putRequest("missing")
        keep.ignoreValue = true
        let request = txnRequest(success: [op(putRequest("b", "1")), op(keep)])
        #expect(throws: ReplicaError.request(.keyNotFound)) { try replica.txn(request) }
        #expect(replica.store.currentRevision == 2)
        #expect(try replica.range("b").count == 0)

        // The same inside a nested txn.
        let nested = txnRequest(success: [op(putRequest("c", "1")), op(txnRequest(success: [op(keep)]))])
        #expect(throws: ReplicaError.request(.keyNotFound)) { try replica.txn(nested) }
        #expect(replica.store.currentRevision == 2)
    }

    @Test("an ignore_value put on a key that exists keeps its value inside a txn")
    func ignoreValueInTxn() throws {
        let replica = try TestReplica()
        try replica.put("a", "old")  // 2
        var keep = putRequest("a")
        keep.ignoreValue = true
        keep.prevKv = true
        let response = try replica.txn(txnRequest(success: [op(keep)]))
        #expect(try response.put(0).prevKv.value == data("old"))
        #expect(try replica.get("a").value == data("old"))
        #expect(try replica.get("a").version == 2)
    }

    @Test("a txn put naming an unknown lease fails the whole txn")
    func unknownLeaseFailsWhole() throws {
        let replica = try TestReplica()
        let request = txnRequest(success: [op(putRequest("a", "1")), op(putRequest("b", "1", lease: 5))])
        #expect(throws: ReplicaError.request(.leaseNotFound)) { try replica.txn(request) }
        #expect(replica.store.currentRevision == 1)
    }

    @Test("delete and prev_kvs inside a txn")
    func deleteInTxn() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        try replica.put("b", "2")
        var delete = deleteRequest("a", end: "c")
        delete.prevKv = true
        let response = try replica.txn(txnRequest(success: [op(delete)]))
        let deleted = try response.deleteRange(0)
        #expect(deleted.deleted == 2)
        #expect(keys(deleted.prevKvs) == ["a", "b"])
        #expect(response.header.revision == 4)
        #expect(try replica.range("a", end: "c").count == 0)
    }
}
