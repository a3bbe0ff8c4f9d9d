import Testing

@testable import EtcdMVCC

@Suite("Watcher index")
struct WatcherIndexTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    private func watchers(of key: String, in index: WatcherIndex<Int>) -> [Int] {
        var found: [Int] = []
        index.forEachWatcher(of: bytes(key)) { found.append($0) }
        return found.sorted()
    }

    @Test("single keys, ranges, prefixes and from-key ranges match what etcd's watchers match")
    func matching() {
        var index = WatcherIndex<Int>()
        let registrations: [(Int, KeyRange)] = [
            (1, .key(bytes("foo"))),
            (2, .range(bytes("foo"), bytes("fop"))),  // prefix "foo"
            (3, .fromKey(bytes("g"))),
            (4, .range(bytes("a"), bytes("z"))),
            (5, .fromKey([0])),  // every key
        ]
        for (watcher, range) in registrations {
            let inserted = index.insert(watcher, for: range)
            #expect(inserted)
        }
        #expect(watchers(of: "foo", in: index) == [1, 2, 4, 5])
        #expect(watchers(of: "foo/bar", in: index) == [2, 4, 5])
        #expect(watchers(of: "fop", in: index) == [4, 5], "range ends are exclusive")
        #expect(watchers(of: "h", in: index) == [3, 4, 5])
        #expect(watchers(of: "zz", in: index) == [3, 5])
        #expect(index.count == 5)
    }

    @Test("an empty range is refused; a duplicate registration is refused; removal is exact")
    func registrations() {
        var index = WatcherIndex<Int>()
        let ac = KeyRange.range(bytes("a"), bytes("c"))
        var outcomes: [Bool] = []
        outcomes.append(index.insert(1, for: .range(bytes("b"), bytes("a"))))
        outcomes.append(index.insert(1, for: .range(bytes("a"), bytes("a"))))
        outcomes.append(index.insert(1, for: ac))
        outcomes.append(index.insert(1, for: ac))
        outcomes.append(index.insert(2, for: ac))
        #expect(outcomes == [false, false, true, false, true])
        outcomes = []
        outcomes.append(index.remove(1, for: .range(bytes("a"), bytes("d"))))
        outcomes.append(index.remove(1, for: ac))
        #expect(outcomes == [false, true])
        #expect(watchers(of: "b", in: index) == [2])
        outcomes = []
        outcomes.append(index.remove(2, for: ac))
        outcomes.append(index.remove(3, for: .key(bytes("b"))))
        #expect(outcomes == [true, false])
        #expect(watchers(of: "b", in: index).isEmpty)
        #expect(index.count == 0)
    }

    @Test("random inserts, removals and lookups agree with checking every watcher", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func randomizedAgainstBruteForce(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let alphabet: [UInt8] = Array("abcd".utf8)
        func randomKey() -> [UInt8] {
            (0..<Int.random(in: 1...3, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
        }
        func randomRange() -> KeyRange {
            switch Int.random(in: 0..<3, using: &random) {
            case 0: return .key(randomKey())
            case 1: return .fromKey(randomKey())
            default:
                let (a, b) = (randomKey(), randomKey())
                return .range(a, b)  // possibly empty: must then be refused
            }
        }
        var index = WatcherIndex<Int>()
        var model: [Int: KeyRange] = [:]
        for step in 0..<3_000 {
            if Int.random(in: 0..<3, using: &random) > 0 || model.isEmpty {
                let range = randomRange()
                let inserted = index.insert(step, for: range)
                let valid: Bool
                if case .range(let start, let end) = range { valid = compareBytes(start, end) < 0 } else { valid = true }
                #expect(inserted == valid, "seed \(seed) step \(step): insert of \(range)")
                if inserted { model[step] = range }
            } else {
                let victim = model.keys.sorted().randomElement(using: &random)!
                let removed = index.remove(victim, for: model[victim]!)
                #expect(removed, "seed \(seed) step \(step)")
                model[victim] = nil
            }
            #expect(index.count == model.count)
            let key = randomKey()
            let expected = model.filter { $0.value.contains(key) }.keys.sorted()
            var found: [Int] = []
            index.forEachWatcher(of: key) { found.append($0) }
            #expect(found.sorted() == expected, "seed \(seed) step \(step): key \(key)")
            if found.sorted() != expected { return }
        }
    }
}

/// xorshift64*, so the randomized test replays from its seed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x2545_F491_4F6C_DD1D | 1 }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
