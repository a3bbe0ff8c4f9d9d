import EtcdBackend
import Testing

@testable import EtcdMVCC

/// Every visible fact of a store at every revision it still answers for, for before/after checks.
private func snapshot(_ store: MVCCStore) throws -> [Int64: [KeyValue]] {
    var result: [Int64: [KeyValue]] = [:]
    for revision in max(store.compactedRevision, 1)...store.currentRevision {
        result[revision] = try store.range(.fromKey([]), options: RangeOptions(revision: revision)).kvs
    }
    return result
}

@Suite("MVCCStore: batches, restart and durability")
struct PersistenceTests {
    @Test("the database lives at <data-dir>/member/db.sqlite")
    func databasePath() throws {
        try withTemporaryDirectory { directory in
            let nested = directory + "/data"
            let store = try openStore(nested)
            try put(store, "k", "v")
            #expect(store.backend.path == nested + "/member/db.sqlite")
            #expect(Backend.databasePath(dataDirectory: nested + "/") == nested + "/member/db.sqlite")
        }
    }

    @Test("after a restart every retained revision reads the same, with the same revisions")
    func restartRoundTrip() throws {
        try withTemporaryDirectory { directory in
            var before: [Int64: [KeyValue]] = [:]
            do {
                let store = try openStore(directory)
                try put(store, "a", "1", lease: 5)
                try put(store, "b", "1")
                try put(store, "a", "2")
                try delete(store, .key(bytes("b")))
                try put(store, "b", "again")
                try apply(store) { txn in
                    try txn.put(key: bytes("c"), value: bytes("x"), lease: 0)
                    try txn.put(key: bytes("c"), value: bytes("y"), lease: 0)
                    _ = try txn.deleteRange(.key(bytes("a")))
                }
                try store.beginBatch()
                try store.setMeta("consistent_index", 77)
                try store.commitBatch()
                #expect(store.currentRevision == 7)
                before = try snapshot(store)
            }
            let reopened = try openStore(directory)
            #expect(reopened.currentRevision == 7)
            #expect(reopened.compactedRevision == 0)
            #expect(try snapshot(reopened) == before)
            #expect(try reopened.meta("consistent_index") == 77)
            // Writing continues from the restored revision with correct versions.
            try put(reopened, "c", "z")
            let c = try #require(try reopened.range(.key(bytes("c")), options: RangeOptions()).kvs.first)
            #expect(c == KeyValue(key: bytes("c"), createRevision: 7, modRevision: 8, version: 3, value: bytes("z"), lease: 0))
        }
    }

    @Test("compaction survives a restart, including versions of keys whose early rows are gone")
    func compactionRestart() throws {
        try withTemporaryDirectory { directory in
            var before: [Int64: [KeyValue]] = [:]
            do {
                let store = try openStore(directory)
                for value in 1...4 {
                    try put(store, "k", "\(value)")  // 2...5
                }
                try put(store, "tmp", "t")  // 6
                try delete(store, .key(bytes("tmp")))  // 7
                try compact(store, 7)
                before = try snapshot(store)
            }
            let reopened = try openStore(directory)
            // The newest rows (put and delete of "tmp") were compacted away; the revision holds.
            #expect(reopened.currentRevision == 7)
            #expect(reopened.compactedRevision == 7)
            #expect(try snapshot(reopened) == before)
            #expect(throws: MVCCError.compacted) { try reopened.range(.fromKey([]), options: RangeOptions(revision: 6)) }
            #expect(throws: MVCCError.compacted) { try compact(reopened, 7) }
            try put(reopened, "k", "5")
            let kv = try #require(try reopened.range(.key(bytes("k")), options: RangeOptions()).kvs.first)
            #expect(kv.createRevision == 2)
            #expect(kv.version == 5)
            #expect(kv.modRevision == 8)
            try put(reopened, "tmp", "new")
            let tmp = try #require(try reopened.range(.key(bytes("tmp")), options: RangeOptions()).kvs.first)
            #expect(tmp.createRevision == 9)
            #expect(tmp.version == 1)
        }
    }

    @Test("abortBatch leaves nothing behind, in memory or on disk")
    func abortLeavesNothing() throws {
        try withTemporaryDirectory { directory in
            let store = try openStore(directory)
            try put(store, "keep", "1")
            let before = try snapshot(store)
            try store.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: bytes("keep"), value: bytes("2"), lease: 0)
            try txn.put(key: bytes("lost"), value: bytes("x"), lease: 0)
            txn.end()
            let second = store.beginWrite()
            _ = try second.deleteRange(.fromKey([]))
            second.end()
            try store.compact(3)
            try store.setMeta("consistent_index", 9)
            #expect(store.currentRevision == 4)
            store.abortBatch()
            #expect(store.currentRevision == 2)
            #expect(store.compactedRevision == 0)
            #expect(try snapshot(store) == before)
            #expect(try store.meta("consistent_index") == nil)
            // The next write reuses revision 3 as if nothing happened.
            try put(store, "next", "1")
            #expect(try store.range(.key(bytes("next")), options: RangeOptions()).kvs.first?.modRevision == 3)
            let reopened = try openStore(directory)
            #expect(reopened.currentRevision == 3)
            #expect(try reopened.range(.key(bytes("lost")), options: RangeOptions()).count == 0)
        }
    }

    @Test("a batch never committed (process death) is gone after reopening")
    func uncommittedBatchLost() throws {
        try withTemporaryDirectory { directory in
            do {
                let store = try openStore(directory)
                try put(store, "durable", "1")
                try store.beginBatch()
                let txn = store.beginWrite()
                try txn.put(key: bytes("volatile"), value: bytes("1"), lease: 0)
                txn.end()
                // Dropping the store and backend here closes the connection without a commit.
            }
            let reopened = try openStore(directory)
            #expect(reopened.currentRevision == 2)
            #expect(keys(try reopened.range(.fromKey([]), options: RangeOptions())) == ["durable"])
        }
    }

    @Test("a backend failure inside a batch poisons it: commit rolls back, rebuilds and throws")
    func failedWriteRollsBack() throws {
        let store = try memoryStore()
        try put(store, "a", "1")
        try store.beginBatch()
        let txn = store.beginWrite()
        try txn.put(key: bytes("b"), value: bytes("1"), lease: 0)
        // Dropping the table inside the transaction makes the next insert fail; the rollback
        // brings the table back.
        try store.backend.execute("DROP TABLE kv")
        #expect(throws: MVCCError.self) { try txn.put(key: bytes("c"), value: bytes("1"), lease: 0) }
        // Further writes in the poisoned batch are refused.
        #expect(throws: MVCCError.self) { try txn.put(key: bytes("d"), value: bytes("1"), lease: 0) }
        txn.end()
        #expect(throws: MVCCError.self) { try store.commitBatch() }
        #expect(store.currentRevision == 2)
        #expect(keys(try store.range(.fromKey([]), options: RangeOptions())) == ["a"])
        try put(store, "e", "1")
        #expect(store.currentRevision == 3)
    }

    @Test("a garbage database file fails to open with a clear backend error")
    func garbageFile() throws {
        try withTemporaryDirectory { directory in
            _ = try Backend(dataDirectory: directory)
            let path = Backend.databasePath(dataDirectory: directory)
            let garbage = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try garbageWrite(garbage, to: path)
            let error = try #require(throws: BackendError.self) { _ = try openStore(directory) }
            #expect(error.isCorruption)
            #expect(error.operation.contains(path))
        }
    }
}
