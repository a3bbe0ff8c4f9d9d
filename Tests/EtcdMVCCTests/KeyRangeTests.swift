import Testing

@testable import EtcdMVCC

@Suite("KeyRange and byte ordering")
struct KeyRangeTests {
    @Test("etcd's (key, range_end) mapping")
    func mapping() {
        #expect(KeyRange(key: [1], rangeEnd: []) == .key([1]))
        #expect(KeyRange(key: [1], rangeEnd: [0]) == .fromKey([1]))
        #expect(KeyRange(key: [], rangeEnd: [0]) == .fromKey([]))
        #expect(KeyRange(key: [1], rangeEnd: [2]) == .range([1], [2]))
        #expect(KeyRange(key: [1], rangeEnd: [0, 0]) == .range([1], [0, 0]))
    }

    @Test("contains follows half-open byte ranges; end <= start is empty")
    func contains() {
        let foo = Array("foo".utf8)
        #expect(KeyRange.key(foo).contains(foo))
        #expect(!KeyRange.key(foo).contains(foo + [0]))
        #expect(KeyRange.fromKey(foo).contains(foo))
        #expect(KeyRange.fromKey(foo).contains([0xff]))
        #expect(!KeyRange.fromKey(foo).contains(Array("fo".utf8)))
        #expect(KeyRange.fromKey([]).contains([]))
        #expect(KeyRange.range(foo, Array("fop".utf8)).contains(foo + [0xff, 0xff]))
        #expect(!KeyRange.range(foo, Array("fop".utf8)).contains(Array("fop".utf8)))
        #expect(!KeyRange.range(Array("b".utf8), Array("a".utf8)).contains(Array("b".utf8)))
        #expect(!KeyRange.range(Array("a".utf8), Array("a".utf8)).contains(Array("a".utf8)))
    }

    @Test("bytes compare unsigned, lexicographically, prefix first")
    func ordering() {
        #expect(compareBytes([], []) == 0)
        #expect(compareBytes([], [0]) == -1)
        #expect(compareBytes([1], [1, 0]) == -1)
        #expect(compareBytes([0x7f], [0x80]) == -1)
        #expect(compareBytes([0xff], [0x00, 0xff]) == 1)
        #expect(compareBytes([1, 2, 3], [1, 2, 3]) == 0)
        #expect(compareBytes([1, 3], [1, 2, 9]) == 1)
    }
}
