import EtcdAPI
import EtcdCommon
import EtcdReplica
import Foundation
import Testing

@Suite("Range")
struct RangeTests {
    /// Keys a, ab, abc, b at revisions 2...5.
    private func prefixFixture() throws -> TestReplica {
        let replica = try TestReplica()
        for key in ["a", "ab", "abc", "b"] { try replica.put(key, "v-" + key) }
        return replica
    }

    @Test("a single key comes back with its revisions, and the header carries the current revision")
    func singleKey() throws {
        let replica = try TestReplica()
        try replica.put("foo", "bar")
        try replica.put("other", "x")

        let response = try replica.range("foo")
        #expect(response.header.revision == 3)
        #expect(response.count == 1)
        #expect(!response.more)
        let kv = try #require(response.kvs.first)
        #expect(response.kvs.count == 1)
        #expect(kv.key == data("foo"))
        #expect(kv.value == data("bar"))
        #expect(kv.createRevision == 2)
        #expect(kv.modRevision == 2)
        #expect(kv.version == 1)
        #expect(kv.lease == 0)
    }

    @Test("a missing key yields nothing, count 0, at the current revision")
    func missingKey() throws {
        let replica = try TestReplica()
        try replica.put("foo", "bar")
        let response = try replica.range("fo")
        #expect(response.kvs.isEmpty)
        #expect(response.count == 0)
        #expect(response.header.revision == 2)
    }

    @Test("range_end makes a half-open interval, as a prefix query uses it")
    func prefix() throws {
        let replica = try prefixFixture()
        #expect(keys(try replica.range("a", end: "b").kvs) == ["a", "ab", "abc"])
        #expect(keys(try replica.range("ab", end: "ac").kvs) == ["ab", "abc"])
        #expect(try replica.range("ab", end: "ac").count == 2)
        #expect(try replica.range("b", end: "a").kvs.isEmpty)
    }

    @Test("range_end \"\\0\" reads every key from key on")
    func fromKey() throws {
        let replica = try prefixFixture()
        let response = try replica.range("ab", end: "\0")
        #expect(keys(response.kvs) == ["ab", "abc", "b"])
        #expect(response.count == 3)
    }

    @Test("key \"\\0\" with range_end \"\\0\" reads every key")
    func allKeys() throws {
        let replica = try prefixFixture()
        let response = try replica.range("\0", end: "\0")
        #expect(keys(response.kvs) == ["a", "ab", "abc", "b"])
        #expect(response.count == 4)
        #expect(response.header.revision == 5)
    }

    @Test(
        "limit truncates the keys and sets more, while count ignores it",
        arguments: [(Int64(1), true), (3, true), (4, false), (10, false)]
    )
    func limit(limit: Int64, more: Bool) throws {
        let replica = try prefixFixture()
        let response = try replica.range(rangeRequest("\0", end: "\0", limit: limit))
        #expect(response.kvs.count == Int(min(limit, 4)))
        #expect(keys(response.kvs) == Array(["a", "ab", "abc", "b"].prefix(Int(limit))))
        #expect(response.more == more)
        #expect(response.count == 4)
    }

    @Test("a revision reads history; the header still carries the current revision")
    func historical() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")  // 2
        try replica.put("a", "2")  // 3
        try replica.delete("a")  // 4
        try replica.put("b", "1")  // 5

        let atTwo = try replica.range("a", revision: 2)
        #expect(atTwo.kvs.map(\.value) == [data("1")])
        #expect(atTwo.header.revision == 5)

        let atThree = try #require(try replica.range("a", revision: 3).kvs.first)
        #expect(atThree.value == data("2"))
        #expect(atThree.version == 2)
        #expect(atThree.createRevision == 2)
        #expect(atThree.modRevision == 3)

        #expect(try replica.range("a", revision: 4).kvs.isEmpty)
        #expect(try replica.range("a").kvs.isEmpty)
        let everything = try replica.range("\0", end: "\0", revision: 3)
        #expect(keys(everything.kvs) == ["a"])
        #expect(everything.count == 1)
    }

    @Test("a revision below the compaction point is compacted; the compaction point itself is readable")
    func compactedRevision() throws {
        let replica = try TestReplica()
        for value in ["1", "2", "3", "4"] { try replica.put("a", value) }  // 2...5
        try replica.compact(3)

        #expect(throws: ReplicaError.request(.compacted)) { try replica.range("a", revision: 2) }
        #expect(throws: ReplicaError.request(.compacted)) { try replica.range("a", revision: 1) }
        #expect(try replica.range("a", revision: 3).kvs.map(\.value) == [data("2")])
        #expect(try replica.range("a", revision: 4).kvs.map(\.value) == [data("3")])
    }

    @Test("a revision past the current one is a future revision")
    func futureRevision() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        #expect(throws: ReplicaError.request(.futureRevision)) { try replica.range("a", revision: 3) }
        #expect(try replica.range("a", revision: 2).count == 1)
    }

    @Test("the errors carry etcd's text")
    func errorText() throws {
        let replica = try TestReplica()
        let error = try #require(throws: ReplicaError.self) { try replica.range("a", revision: 9) }
        guard case .request(let etcdError) = error else {
            Issue.record("expected a request error, got \(error)")
            return
        }
        #expect(etcdError == .futureRevision)
        #expect(etcdError.message == "etcdserver: mvcc: required revision is a future revision")
    }

    // MARK: Sorting

    struct SortCase: Sendable, CustomTestStringConvertible {
        var target: Etcdserverpb_RangeRequest.SortTarget
        var order: Etcdserverpb_RangeRequest.SortOrder
        var keys: [String]
        var testDescription: String { "\(target) \(order)" }
    }

    /// The answers of etcd 3.4.23 for the fixture below (HTTP gateway, /v3/kv/range).
    static let sortCases: [SortCase] = [
        SortCase(target: .key, order: .none, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .key, order: .ascend, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .key, order: .descend, keys: ["s/c", "s/b", "s/a"]),
        SortCase(target: .version, order: .none, keys: ["s/b", "s/c", "s/a"]),
        SortCase(target: .version, order: .ascend, keys: ["s/b", "s/c", "s/a"]),
        SortCase(target: .version, order: .descend, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .value, order: .none, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .value, order: .ascend, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .value, order: .descend, keys: ["s/a", "s/b", "s/c"]),
        SortCase(target: .create, order: .none, keys: ["s/c", "s/a", "s/b"]),
        SortCase(target: .create, order: .ascend, keys: ["s/c", "s/a", "s/b"]),
        SortCase(target: .create, order: .descend, keys: ["s/b", "s/a", "s/c"]),
        SortCase(target: .mod, order: .none, keys: ["s/c", "s/b", "s/a"]),
        SortCase(target: .mod, order: .ascend, keys: ["s/c", "s/b", "s/a"]),
        SortCase(target: .mod, order: .descend, keys: ["s/a", "s/b", "s/c"]),
    ]

    @Test(
        "sorting by every target and order matches etcd, a non-key target defaults to ascending, ties keep key order",
        arguments: sortCases
    )
    func sort(sortCase: SortCase) throws {
        // s/c (create 2, version 1), s/a (create 3, mod 5, version 2), s/b (create 4, version 1);
        // every value ends as "x", so a value sort is all ties.
        let replica = try TestReplica()
        try replica.put("s/c", "x")
        try replica.put("s/a", "y")
        try replica.put("s/b", "x")
        try replica.put("s/a", "x")

        var request = rangeRequest("s/", end: "s0")
        request.sortTarget = sortCase.target
        request.sortOrder = sortCase.order
        let response = try replica.range(request)
        #expect(keys(response.kvs) == sortCase.keys)
        #expect(response.count == 3)
    }

    @Test("sorting by value compares the bytes", arguments: [
        (Etcdserverpb_RangeRequest.SortOrder.ascend, ["k2", "k3", "k1"]),
        (.descend, ["k1", "k3", "k2"]),
    ])
    func sortByValue(order: Etcdserverpb_RangeRequest.SortOrder, expected: [String]) throws {
        let replica = try TestReplica()
        try replica.put("k1", "c")
        try replica.put("k2", "a")
        try replica.put("k3", "b")
        var request = rangeRequest("k", end: "l")
        request.sortTarget = .value
        request.sortOrder = order
        #expect(keys(try replica.range(request).kvs) == expected)
    }

    @Test("the limit applies after sorting")
    func sortThenLimit() throws {
        let replica = try prefixFixture()
        var request = rangeRequest("\0", end: "\0", limit: 2)
        request.sortOrder = .descend
        let response = try replica.range(request)
        #expect(keys(response.kvs) == ["b", "abc"])
        #expect(response.more)
        #expect(response.count == 4)
    }

    // MARK: Options

    @Test("keys_only drops the values and keeps everything else")
    func keysOnly() throws {
        let replica = try prefixFixture()
        var request = rangeRequest("a", end: "b")
        request.keysOnly = true
        let response = try replica.range(request)
        #expect(keys(response.kvs) == ["a", "ab", "abc"])
        #expect(response.kvs.allSatisfy { $0.value.isEmpty })
        #expect(response.kvs.map(\.modRevision) == [2, 3, 4])
        #expect(response.kvs.map(\.version) == [1, 1, 1])
        #expect(response.count == 3)
    }

    @Test("count_only returns the count and no key-values, whatever the limit")
    func countOnly() throws {
        let replica = try prefixFixture()
        var request = rangeRequest("\0", end: "\0", limit: 1)
        request.countOnly = true
        let response = try replica.range(request)
        #expect(response.kvs.isEmpty)
        #expect(response.count == 4)
        #expect(!response.more)
        #expect(response.header.revision == 5)
    }

    struct FilterCase: Sendable, CustomTestStringConvertible {
        var name: String
        var minMod: Int64 = 0
        var maxMod: Int64 = 0
        var minCreate: Int64 = 0
        var maxCreate: Int64 = 0
        var limit: Int64 = 0
        var keys: [String]
        var more = false
        var testDescription: String { name }
    }

    static let filterCases: [FilterCase] = [
        FilterCase(name: "min_mod_revision", minMod: 4, keys: ["a", "c"]),
        FilterCase(name: "max_mod_revision", maxMod: 3, keys: ["b"]),
        FilterCase(name: "min_create_revision", minCreate: 3, keys: ["b", "c"]),
        FilterCase(name: "max_create_revision", maxCreate: 2, keys: ["a"]),
        FilterCase(name: "min and max mod_revision", minMod: 3, maxMod: 4, keys: ["a", "b"]),
        FilterCase(name: "nothing passes", maxCreate: 1, keys: []),
        FilterCase(name: "a filter and a limit", minMod: 3, limit: 1, keys: ["a"], more: true),
        FilterCase(name: "a filter and a limit that is not reached", minMod: 5, limit: 1, keys: ["c"]),
    ]

    @Test("the revision filters drop key-values but not the count, which etcd takes before filtering",
        arguments: filterCases)
    func filters(filter: FilterCase) throws {
        // a: create 2, mod 4; b: create 3, mod 3; c: create 5, mod 5.
        let replica = try TestReplica()
        try replica.put("a", "1")
        try replica.put("b", "1")
        try replica.put("a", "2")
        try replica.put("c", "1")

        var request = rangeRequest("\0", end: "\0", limit: filter.limit)
        request.minModRevision = filter.minMod
        request.maxModRevision = filter.maxMod
        request.minCreateRevision = filter.minCreate
        request.maxCreateRevision = filter.maxCreate
        let response = try replica.range(request)
        #expect(keys(response.kvs) == filter.keys)
        #expect(response.count == 3)
        #expect(response.more == filter.more)
        #expect(response.header.revision == 5)
    }

    @Test("an empty store answers at revision 1")
    func emptyStore() throws {
        let replica = try TestReplica()
        let response = try replica.range("\0", end: "\0")
        #expect(response.kvs.isEmpty)
        #expect(response.count == 0)
        #expect(response.header.revision == 1)
    }
}
