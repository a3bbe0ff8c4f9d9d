import Testing

@testable import EtcdMVCC

@Suite("OrderedKeyMap: a chunked sorted map over byte keys")
struct OrderedKeyMapTests {
    private func allKeys(_ map: OrderedKeyMap<Int>, from start: [UInt8] = []) -> [[UInt8]] {
        var keys: [[UInt8]] = []
        map.forEach(from: start) { key, _ in
            keys.append(key)
            return true
        }
        return keys
    }

    @Test("random inserts come back sorted across many chunk splits")
    func sortedAfterInserts() {
        var (rng, _) = SeededGenerator.fromEnvironment("OrderedKeyMapTests.sortedAfterInserts")
        var map = OrderedKeyMap<Int>()
        var reference: [[UInt8]: Int] = [:]
        for value in 0..<5_000 {
            let length = Int.random(in: 0...4, using: &rng)
            let key = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            map.update(key, insertingIfAbsent: { 0 }) { $0 = value }
            reference[key] = value
        }
        #expect(map.count == reference.count)
        let sorted = reference.keys.sorted { compareBytes($0, $1) < 0 }
        #expect(allKeys(map) == sorted)
        for (key, value) in reference {
            #expect(map[key] == value)
        }
        // Starting anywhere yields exactly the suffix at or after the start key.
        for _ in 0..<200 {
            let start = (0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(allKeys(map, from: start) == sorted.filter { compareBytes($0, start) >= 0 })
        }
    }

    @Test("updateAll edits in place and drops entries, keeping order")
    func updateAllFilters() {
        var map = OrderedKeyMap<Int>()
        for index in 0..<1_000 {
            map.update([UInt8(index / 256), UInt8(index % 256)], insertingIfAbsent: { index }) { _ in }
        }
        map.updateAll { _, value in
            value *= 2
            return value % 3 == 0
        }
        let expected = (0..<1_000).filter { ($0 * 2) % 3 == 0 }
        #expect(map.count == expected.count)
        #expect(allKeys(map) == expected.map { [UInt8($0 / 256), UInt8($0 % 256)] })
        #expect(map[[0, 3]] == 6)
        #expect(map[[0, 1]] == nil)
        // Still insertable after repacking.
        map.update([0, 1], insertingIfAbsent: { 7 }) { _ in }
        #expect(map[[0, 1]] == 7)
        map.updateAll { _, _ in false }
        #expect(map.count == 0)
        #expect(allKeys(map).isEmpty)
    }

    @Test("modify touches only present keys")
    func modifyPresentOnly() {
        var map = OrderedKeyMap<Int>()
        #expect(map.modify([1]) { $0 += 1 } == nil)
        map.update([1], insertingIfAbsent: { 1 }) { _ in }
        map.modify([1]) { $0 += 1 }
        #expect(map[[1]] == 2)
        #expect(map.count == 1)
    }
}
