import EtcdBackend
import Testing

@testable import EtcdMVCC

@Suite("MVCCStore: revisions, transactions, ranges")
struct StoreTests {
    @Test("a new store is at revision 1, never compacted, and empty")
    func fresh() throws {
        let store = try memoryStore()
        #expect(store.currentRevision == 1)
        #expect(store.compactedRevision == 0)
        let result = try store.range(.fromKey([]), options: RangeOptions())
        #expect(result.kvs.isEmpty)
        #expect(result.count == 0)
        #expect(result.revision == 1)
    }

    @Test("puts get the next main revision; a live key keeps its creation revision and counts versions")
    func putRevisions() throws {
        let store = try memoryStore()
        try put(store, "foo", "bar", lease: 7)
        #expect(store.currentRevision == 2)
        var kv = try #require(try store.range(.key(bytes("foo")), options: RangeOptions()).kvs.first)
        #expect(kv == KeyValue(key: bytes("foo"), createRevision: 2, modRevision: 2, version: 1, value: bytes("bar"), lease: 7))
        try put(store, "foo", "baz")
        kv = try #require(try store.range(.key(bytes("foo")), options: RangeOptions()).kvs.first)
        #expect(kv == KeyValue(key: bytes("foo"), createRevision: 2, modRevision: 3, version: 2, value: bytes("baz"), lease: 0))
        // The old version is still readable at its revision.
        kv = try #require(try store.range(.key(bytes("foo")), options: RangeOptions(revision: 2)).kvs.first)
        #expect(kv.value == bytes("bar"))
        #expect(kv.lease == 7)
    }

    @Test("empty keys' values round-trip as empty bytes")
    func emptyValue() throws {
        let store = try memoryStore()
        try put(store, "k", "")
        let kv = try #require(try store.range(.key(bytes("k")), options: RangeOptions()).kvs.first)
        #expect(kv.value == [])
    }

    @Test("one transaction's changes share a main revision with increasing sub revisions")
    func transactionSubRevisions() throws {
        let store = try memoryStore()
        try store.beginBatch()
        let txn = store.beginWrite()
        try txn.put(key: bytes("a"), value: bytes("1"), lease: 0)
        try txn.put(key: bytes("b"), value: bytes("2"), lease: 0)
        try txn.put(key: bytes("a"), value: bytes("3"), lease: 0)
        #expect(try txn.deleteRange(.key(bytes("b"))) == 1)
        #expect(txn.changeCount == 4)
        // The transaction reads its own writes, at its own revision.
        let inside = try txn.range(.fromKey([]), options: RangeOptions())
        #expect(inside.revision == 2)
        #expect(keys(inside) == ["a"])
        #expect(inside.kvs.first?.version == 2)
        #expect(inside.kvs.first?.createRevision == 2)
        // The store is still at the old revision until the transaction ends.
        #expect(try store.range(.fromKey([]), options: RangeOptions()).count == 0)
        #expect(txn.changes.map(\.kind) == [.put, .put, .put, .delete])
        #expect(txn.changes.map(\.kv.modRevision) == [2, 2, 2, 2])
        txn.end()
        try store.commitBatch()
        #expect(store.currentRevision == 2)
        let events = try store.events(from: 2)
        #expect(events.map(\.kind) == [.put, .put, .put, .delete])
        #expect(events.map(\.kv.key) == [bytes("a"), bytes("b"), bytes("a"), bytes("b")])
    }

    @Test("a transaction with no changes reads at the begin revision and does not advance the store")
    func emptyTransaction() throws {
        let store = try memoryStore()
        try put(store, "a", "1")
        try store.beginBatch()
        let txn = store.beginWrite()
        #expect(try txn.range(.key(bytes("a")), options: RangeOptions()).revision == 2)
        #expect(throws: MVCCError.futureRevision) { try txn.range(.key(bytes("a")), options: RangeOptions(revision: 3)) }
        #expect(try txn.deleteRange(.key(bytes("missing"))) == 0)
        #expect(try txn.deleteRange(.range(bytes("b"), bytes("a"))) == 0)
        #expect(txn.changeCount == 0)
        txn.end()
        try store.commitBatch()
        #expect(store.currentRevision == 2)
    }

    @Test("delete then re-create resets the creation revision and restarts the version at 1")
    func recreate() throws {
        let store = try memoryStore()
        try put(store, "k", "v1")  // 2
        try put(store, "k", "v2")  // 3
        #expect(try delete(store, .key(bytes("k"))) == 1)  // 4
        #expect(try delete(store, .key(bytes("k"))) == 0)  // nothing: still 4
        #expect(store.currentRevision == 4)
        try put(store, "k", "v3")  // 5
        let kv = try #require(try store.range(.key(bytes("k")), options: RangeOptions()).kvs.first)
        #expect(kv.createRevision == 5)
        #expect(kv.version == 1)
        #expect(try store.range(.key(bytes("k")), options: RangeOptions(revision: 4)).count == 0)
        let old = try #require(try store.range(.key(bytes("k")), options: RangeOptions(revision: 3)).kvs.first)
        #expect(old.createRevision == 2)
        #expect(old.version == 2)
        #expect(old.value == bytes("v2"))
    }

    @Test("range: single key, from-key, half-open range, empty and inverted ranges")
    func rangeShapes() throws {
        let store = try memoryStore()
        for key in ["a", "ab", "abc", "b", "c", "c\u{0}", "d"] {
            try put(store, key, key)
        }
        try put(store, "z", "z")
        let all = RangeOptions()
        #expect(keys(try store.range(.key(bytes("ab")), options: all)) == ["ab"])
        #expect(keys(try store.range(.key(bytes("aa")), options: all)) == [])
        #expect(keys(try store.range(.fromKey(bytes("c")), options: all)) == ["c", "c\u{0}", "d", "z"])
        #expect(keys(try store.range(.fromKey([]), options: all)).count == 8)
        #expect(keys(try store.range(.range(bytes("a"), bytes("b")), options: all)) == ["a", "ab", "abc"])
        #expect(keys(try store.range(.range(bytes("ab"), bytes("c\u{0}")), options: all)) == ["ab", "abc", "b", "c"])
        #expect(keys(try store.range(.range(bytes("b"), bytes("b")), options: all)) == [])
        #expect(keys(try store.range(.range(bytes("d"), bytes("a")), options: all)) == [])
        #expect(try store.range(.range(bytes("d"), bytes("a")), options: all).count == 0)
        #expect(keys(try store.range(KeyRange(key: bytes("b"), rangeEnd: [0]), options: all)) == ["b", "c", "c\u{0}", "d", "z"])
    }

    @Test("limit caps the key-values but not the count; countOnly returns no key-values")
    func limitAndCount() throws {
        let store = try memoryStore()
        for key in ["e", "d", "c", "b", "a"] {
            try put(store, key, key)
        }
        let limited = try store.range(.fromKey([]), options: RangeOptions(limit: 2))
        #expect(keys(limited) == ["a", "b"])
        #expect(limited.count == 5)
        let over = try store.range(.fromKey([]), options: RangeOptions(limit: 10))
        #expect(over.kvs.count == 5)
        let counted = try store.range(.range(bytes("b"), bytes("e")), options: RangeOptions(countOnly: true))
        #expect(counted.kvs.isEmpty)
        #expect(counted.count == 3)
        #expect(counted.revision == 6)
        // Historical counts see only what existed then.
        #expect(try store.range(.fromKey([]), options: RangeOptions(revision: 3, countOnly: true)).count == 2)
    }

    @Test("keys sort by unsigned bytes, shorter prefix first")
    func byteOrder() throws {
        let store = try memoryStore()
        try apply(store) { txn in
            for key: [UInt8] in [[0xff], [0x00], [0x7f, 0x01], [0x7f], [0x80], []] {
                try txn.put(key: key, value: [1], lease: 0)
            }
        }
        let result = try store.range(.fromKey([]), options: RangeOptions())
        #expect(result.kvs.map(\.key) == [[], [0x00], [0x7f], [0x7f, 0x01], [0x80], [0xff]])
    }

    @Test("reads: future revisions fail, compacted ones fail, and the compacted revision itself is readable")
    func revisionErrors() throws {
        let store = try memoryStore()
        for value in 0..<5 {
            try put(store, "k", "v\(value)")  // revisions 2...6
        }
        #expect(throws: MVCCError.futureRevision) { try store.range(.key(bytes("k")), options: RangeOptions(revision: 7)) }
        try compact(store, 4)
        #expect(store.compactedRevision == 4)
        #expect(store.currentRevision == 6)
        #expect(throws: MVCCError.compacted) { try store.range(.key(bytes("k")), options: RangeOptions(revision: 3)) }
        let atCompaction = try store.range(.key(bytes("k")), options: RangeOptions(revision: 4))
        #expect(atCompaction.kvs.first?.value == bytes("v2"))
        #expect(atCompaction.revision == 6)
        #expect(try store.range(.key(bytes("k")), options: RangeOptions(revision: 0)).kvs.first?.value == bytes("v4"))
        #expect(throws: MVCCError.compacted) { try compact(store, 4) }
        #expect(throws: MVCCError.compacted) { try compact(store, 2) }
        #expect(throws: MVCCError.futureRevision) { try compact(store, 7) }
        try compact(store, 6)
        #expect(store.compactedRevision == 6)
        #expect(store.currentRevision == 6)
    }

    @Test("as in etcd, a never-compacted store accepts compaction at 0 once")
    func compactZero() throws {
        let store = try memoryStore()
        try compact(store, 0)
        #expect(store.compactedRevision == 0)
        #expect(throws: MVCCError.compacted) { try compact(store, 0) }
        try compact(store, 1)
        #expect(store.compactedRevision == 1)
    }

    @Test("compaction deletes every row but each live key's newest one at or below it")
    func compactionRows() throws {
        let store = try memoryStore()
        try put(store, "live", "1")  // 2
        try put(store, "live", "2")  // 3
        try put(store, "gone", "1")  // 4
        try delete(store, .key(bytes("gone")))  // 5
        try put(store, "late", "1")  // 6
        try put(store, "live", "3")  // 7
        #expect(try rowCount(store) == 6)
        try compact(store, 5)
        // Kept: live@3 (newest <= 5), late@6, live@7. Dropped: live@2 and all of "gone", in
        // steps after the compaction took effect, oldest first.
        #expect(store.pendingCompactionRowCount == 3)
        #expect(store.physicallyCompactedRevision == -1)
        try store.beginBatch()
        #expect(try store.compactStep(limit: 2) == 2)
        #expect(store.physicallyCompactedRevision == -1)
        #expect(try store.compactStep(limit: 2) == 1)
        #expect(try store.compactStep(limit: 2) == 0)
        try store.commitBatch()
        #expect(store.physicallyCompactedRevision == 5)
        #expect(try rowCount(store) == 3)
        #expect(store.index.count == 2)
        let at5 = try store.range(.fromKey([]), options: RangeOptions(revision: 5))
        #expect(keys(at5) == ["live"])
        #expect(at5.kvs.first?.value == bytes("2"))
        #expect(at5.kvs.first?.version == 2)
        let now = try store.range(.fromKey([]), options: RangeOptions())
        #expect(keys(now) == ["late", "live"])
        #expect(now.kvs.last?.version == 3)
        #expect(now.kvs.last?.createRevision == 2)
        #expect(try store.meta(MVCCStore.compactedRevisionMetaName) == 5)
    }

    @Test("meta values live in the batch and persist")
    func metaValues() throws {
        let store = try memoryStore()
        #expect(try store.meta("consistent_index") == nil)
        try store.beginBatch()
        try store.setMeta("consistent_index", 42)
        try store.setMeta("term", 3)
        #expect(try store.meta("consistent_index") == 42)
        try store.commitBatch()
        try store.beginBatch()
        try store.setMeta("consistent_index", 43)
        store.abortBatch()
        #expect(try store.meta("consistent_index") == 42)
        #expect(try store.meta("term") == 3)
    }

    @Test("several write transactions in one batch each take the next revision")
    func batchOfTransactions() throws {
        let store = try memoryStore()
        try store.beginBatch()
        for index in 0..<3 {
            let txn = store.beginWrite()
            try txn.put(key: bytes("k\(index)"), value: bytes("v"), lease: 0)
            txn.end()
            #expect(store.currentRevision == Int64(index) + 2)
        }
        // Inside the batch the owner sees its applied writes.
        #expect(try store.range(.fromKey([]), options: RangeOptions()).count == 3)
        try store.commitBatch()
        let result = try store.range(.fromKey([]), options: RangeOptions())
        #expect(result.kvs.map(\.modRevision) == [2, 3, 4])
    }

    @Test("events list puts and deletes in revision order, refusing compacted starts")
    func events() throws {
        let store = try memoryStore()
        try put(store, "a", "1", lease: 9)  // 2
        try delete(store, .key(bytes("a")))  // 3
        try put(store, "b", "2")  // 4
        let events = try store.events(from: 2)
        #expect(
            events == [
                MVCCEvent(kind: .put, kv: KeyValue(key: bytes("a"), createRevision: 2, modRevision: 2, version: 1, value: bytes("1"), lease: 9)),
                MVCCEvent(kind: .delete, kv: KeyValue(key: bytes("a"), createRevision: 0, modRevision: 3, version: 0, value: [], lease: 0)),
                MVCCEvent(kind: .put, kv: KeyValue(key: bytes("b"), createRevision: 4, modRevision: 4, version: 1, value: bytes("2"), lease: 0)),
            ]
        )
        #expect(try store.events(from: 3, through: 3).count == 1)
        #expect(try store.events(from: 2, limit: 2).count == 2)
        try compact(store, 3)
        #expect(throws: MVCCError.compacted) { try store.events(from: 2) }
        #expect(try store.events(from: 3).map(\.kv.modRevision) == [4])
    }
}
