import Testing

@testable import EtcdMVCC

private func history(_ store: MVCCStore, lastValue: String = "3") throws {
    try put(store, "a", "1")  // 2
    try put(store, "b", "2")  // 3
    try delete(store, .key(bytes("a")))  // 4
    try put(store, "b", lastValue)  // 5
}

@Suite("hashKV: a checksum members compare")
struct HashTests {
    @Test("CRC-32C matches the standard check value")
    func crcCheckValue() {
        var crc = CRC32C()
        crc.update(bytes("123456789"))
        #expect(crc.value == 0xE306_9283)
    }

    @Test("the same history hashes the same; a different value does not")
    func deterministic() throws {
        let first = try memoryStore()
        let second = try memoryStore()
        let third = try memoryStore()
        try history(first)
        try history(second)
        try history(third, lastValue: "other")
        #expect(try first.hashKV(revision: 0) == second.hashKV(revision: 0))
        #expect(try first.hashKV(revision: 0).hash != third.hashKV(revision: 0).hash)
        #expect(try first.hashKV(revision: 4) == third.hashKV(revision: 4))
        #expect(try first.hashKV(revision: 0).compactRevision == -1)
        #expect(try first.hashKV(revision: 0).revision == 5)
    }

    @Test("a hash at a revision ignores later writes and survives a restart")
    func stable() throws {
        try withTemporaryDirectory { directory in
            let store = try openStore(directory)
            try history(store)
            let before = try store.hashKV(revision: 4).hash
            try put(store, "c", "later")
            #expect(try store.hashKV(revision: 4).hash == before)
            let reopened = try openStore(directory)
            #expect(try reopened.hashKV(revision: 4).hash == before)
        }
    }

    @Test("members compacted at the same revision agree, and compacted or future revisions fail")
    func compaction() throws {
        let first = try memoryStore()
        let second = try memoryStore()
        try history(first)
        try history(second)
        try compact(first, 4)
        try compact(second, 4)
        #expect(try first.hashKV(revision: 5) == second.hashKV(revision: 5))
        #expect(try first.hashKV(revision: 5).compactRevision == 4)
        #expect(throws: MVCCError.compacted) { try first.hashKV(revision: 4) }
        #expect(throws: MVCCError.futureRevision) { try first.hashKV(revision: 6) }
    }

    @Test("a row in etcd's bbolt bytes: the revision key (main, '_', sub, 't' for a deletion), then the marshalled KeyValue")
    func etcdRowBytes() {
        var key: [UInt8] = []
        EtcdRowEncoding.appendRevisionKey(Revision(main: 0x0102, sub: 3), tombstone: true, to: &key)
        #expect(key == [0, 0, 0, 0, 0, 0, 1, 2, 0x5f, 0, 0, 0, 0, 0, 0, 0, 3, 0x74])
        var value: [UInt8] = []
        let kv = KeyValue(key: bytes("k"), createRevision: 2, modRevision: 300, version: 1, value: bytes("v"), lease: 0)
        EtcdRowEncoding.appendKeyValue(kv, to: &value)
        // key, create_revision, mod_revision (a two-byte varint), version, value; no lease (zero).
        #expect(value == [0x0a, 1, 0x6b, 0x10, 2, 0x18, 0xac, 0x02, 0x20, 1, 0x2a, 1, 0x76])
        var tombstone: [UInt8] = []
        EtcdRowEncoding.appendKeyValue(.tombstone(of: bytes("k")), to: &tombstone)
        #expect(tombstone == [0x0a, 1, 0x6b])
    }

    @Test("Hash covers every stored row: equal for equal histories, changed by a write and by a compaction")
    func wholeHash() throws {
        let first = try memoryStore()
        let second = try memoryStore()
        try history(first)
        try history(second)
        #expect(try first.hashAllRows() == second.hashAllRows())
        let before = try first.hashAllRows().hash
        try compact(first, 4)
        try first.beginBatch()
        _ = try first.compactStep(limit: 100)
        try first.commitBatch()
        #expect(try first.hashAllRows().hash != before)
        try put(second, "c", "x")
        #expect(try second.hashAllRows().hash != before)
    }

    @Test("hashing a piece at a time gives the one-go hash; a compaction between pieces starts it again")
    func inPieces() throws {
        let store = try memoryStore()
        try history(store)
        for index in 0..<20 { try put(store, "k\(index % 7)", "v\(index)") }
        for rows in [1, 2, 3, 7, 100] {
            var progress = try store.startHashKV(revision: 20)
            var result: KVHash?
            while result == nil { result = try store.continueHash(&progress, rows: rows) }
            #expect(result == (try store.hashKV(revision: 20)), "\(rows) rows a piece")
            var whole = store.startHashAllRows()
            var all: KVHash?
            while all == nil { all = try store.continueHash(&whole, rows: rows) }
            #expect(all == (try store.hashAllRows()), "\(rows) rows a piece")
        }
        var progress = try store.startHashKV(revision: 20)
        #expect(try store.continueHash(&progress, rows: 5) == nil)
        try compact(store, 10)
        var result: KVHash?
        while result == nil { result = try store.continueHash(&progress, rows: 5) }
        #expect(result == (try store.hashKV(revision: 20)))
        #expect(result?.compactRevision == 10)
        try compact(store, 21)
        #expect(throws: MVCCError.compacted) { try store.continueHash(&progress, rows: 5) }
    }
}
