import Testing

@testable import EtcdMVCC

/// The history etcd's own key index tests use: puts at 2 and 4, delete at 6, puts at 8 and 10,
/// delete at 12, two puts in one transaction at 14.0 and 14.1, delete at 16.
private func threeGenerations() -> KeyIndex {
    var index = KeyIndex()
    index.put(Revision(main: 2, sub: 0))
    index.put(Revision(main: 4, sub: 0))
    index.tombstone(Revision(main: 6, sub: 0))
    index.put(Revision(main: 8, sub: 0))
    index.put(Revision(main: 10, sub: 0))
    index.tombstone(Revision(main: 12, sub: 0))
    index.put(Revision(main: 14, sub: 0))
    index.put(Revision(main: 14, sub: 1))
    index.tombstone(Revision(main: 16, sub: 0))
    return index
}

private func mains(_ index: KeyIndex) -> [[Revision]] {
    index.generations.map(\.revisions)
}

private func revs(_ pairs: (Int64, Int64)...) -> [Revision] {
    pairs.map { Revision(main: $0.0, sub: $0.1) }
}

@Suite("Key index: generations, tombstones, historical reads, compaction")
struct KeyIndexTests {
    @Test("puts and tombstones build generations; every finished generation ends in its tombstone")
    func generations() {
        let index = threeGenerations()
        #expect(
            mains(index) == [
                revs((2, 0), (4, 0), (6, 0)), revs((8, 0), (10, 0), (12, 0)), revs((14, 0), (14, 1), (16, 0)), [],
            ]
        )
        #expect(index.generations.map(\.created) == [2, 8, 14, 0])
        #expect(index.generations.map(\.version) == [3, 3, 3, 0])
        #expect(index.modified == Revision(main: 16, sub: 0))
        #expect(!index.isLive)
        #expect(!index.isEmpty)
    }

    @Test("a tombstone on a deleted key is refused and changes nothing")
    func tombstoneOnDeletedKey() {
        var index = threeGenerations()
        let before = index
        #expect(index.tombstone(Revision(main: 17, sub: 0)) == false)
        #expect(index == before)
        var fresh = KeyIndex()
        #expect(fresh.tombstone(Revision(main: 2, sub: 0)) == false)
        #expect(fresh.isEmpty)
    }

    @Test("get returns the newest revision at or below the read revision inside the live generation")
    func historicalReads() {
        let index = threeGenerations()
        // (read revision) -> (modified, created, version) or nil when the key is absent.
        let expected: [Int64: (Revision, Int64, Int64)?] = [
            0: nil, 1: nil,
            2: (Revision(main: 2, sub: 0), 2, 1), 3: (Revision(main: 2, sub: 0), 2, 1),
            4: (Revision(main: 4, sub: 0), 2, 2), 5: (Revision(main: 4, sub: 0), 2, 2),
            6: nil, 7: nil,
            8: (Revision(main: 8, sub: 0), 8, 1), 9: (Revision(main: 8, sub: 0), 8, 1),
            10: (Revision(main: 10, sub: 0), 8, 2), 11: (Revision(main: 10, sub: 0), 8, 2),
            12: nil, 13: nil,
            14: (Revision(main: 14, sub: 1), 14, 2), 15: (Revision(main: 14, sub: 1), 14, 2),
            16: nil, 17: nil,
        ]
        for (at, want) in expected.sorted(by: { $0.key < $1.key }) {
            let got = index.get(at: at)
            if let want {
                #expect(got?.modified == want.0, "at \(at)")
                #expect(got?.created == want.1, "at \(at)")
                #expect(got?.version == want.2, "at \(at)")
            } else {
                #expect(got == nil, "at \(at)")
            }
        }
    }

    /// For each compaction revision, the generations left (by revision), worked out by hand.
    static let compactionCases: [CompactionCase] = {
        let first = revs((2, 0), (4, 0), (6, 0))
        let second = revs((8, 0), (10, 0), (12, 0))
        let third = revs((14, 0), (14, 1), (16, 0))
        let firstTail = revs((4, 0), (6, 0))
        let secondTail = revs((10, 0), (12, 0))
        let thirdTail = revs((14, 1), (16, 0))
        let table: [(Int64, [[Revision]])] = [
            (1, [first, second, third, []]), (2, [first, second, third, []]), (3, [first, second, third, []]),
            (4, [firstTail, second, third, []]), (5, [firstTail, second, third, []]),
            (6, [second, third, []]), (7, [second, third, []]), (8, [second, third, []]), (9, [second, third, []]),
            (10, [secondTail, third, []]), (11, [secondTail, third, []]),
            (12, [third, []]), (13, [third, []]),
            (14, [thirdTail, []]), (15, [thirdTail, []]),
            (16, [[]]), (17, [[]]),
        ]
        return table.map { CompactionCase(at: $0.0, expected: $0.1) }
    }()

    struct CompactionCase: Sendable, CustomTestStringConvertible {
        var at: Int64
        var expected: [[Revision]]
        var testDescription: String { "compact(\(at))" }
    }

    @Test(
        "compaction keeps the newest revision at or below it and drops tombstoned generations",
        arguments: compactionCases
    )
    func compaction(_ testCase: CompactionCase) {
        let at = testCase.at
        let expected = testCase.expected
        var index = threeGenerations()
        let all = index.generations.flatMap(\.revisions)
        var removed: [Revision] = []
        index.compact(at: at, removed: &removed)
        #expect(mains(index) == expected)
        // Whatever is gone from the index is reported, so the same rows leave the disk.
        #expect(Set(removed).union(expected.flatMap { $0 }) == Set(all))
        #expect(Set(removed).isDisjoint(with: expected.flatMap { $0 }))
        #expect(index.isEmpty == (at >= 16))
        // Reads at or after the compaction point are unchanged.
        let original = threeGenerations()
        for read in at...18 {
            #expect(index.get(at: read)?.modified == original.get(at: read)?.modified, "read at \(read)")
            #expect(index.get(at: read)?.version == original.get(at: read)?.version, "read at \(read)")
            #expect(index.get(at: read)?.created == original.get(at: read)?.created, "read at \(read)")
        }
    }

    @Test("compacting twice at the same revision is a no-op")
    func compactIdempotent() {
        var index = threeGenerations()
        var removed: [Revision] = []
        index.compact(at: 10, removed: &removed)
        let once = index
        removed = []
        index.compact(at: 10, removed: &removed)
        #expect(index == once)
        #expect(removed.isEmpty)
    }

    @Test("a live key's single revision survives any compaction")
    func liveKeySurvives() {
        var index = KeyIndex()
        index.put(Revision(main: 3, sub: 0))
        var removed: [Revision] = []
        index.compact(at: 100, removed: &removed)
        #expect(removed.isEmpty)
        #expect(index.get(at: 100)?.modified == Revision(main: 3, sub: 0))
        #expect(!index.isEmpty)
    }

    @Test("re-creating a deleted key starts a new generation at version 1")
    func recreate() {
        var index = KeyIndex()
        index.put(Revision(main: 2, sub: 0))
        index.put(Revision(main: 3, sub: 0))
        index.tombstone(Revision(main: 4, sub: 0))
        index.put(Revision(main: 5, sub: 0))
        #expect(index.get(at: 5)?.created == 5)
        #expect(index.get(at: 5)?.version == 1)
        #expect(index.get(at: 3)?.created == 2)
        #expect(index.get(at: 3)?.version == 2)
        #expect(index.get(at: 4) == nil)
    }

    @Test("restore from a surviving row keeps the creation revision and version")
    func restore() {
        var index = KeyIndex()
        index.restore(created: 2, modified: Revision(main: 9, sub: 1), version: 5)
        index.put(Revision(main: 10, sub: 0))
        #expect(index.get(at: 9)?.version == 5)
        #expect(index.get(at: 10)?.version == 6)
        #expect(index.get(at: 10)?.created == 2)
        #expect(index.get(at: 8) == nil)
    }
}
