@testable import EtcdRaft
import Testing

@Suite struct ConfChangeUnitTests {
    @Test(
        "encoding round-trips every kind, ID and context",
        arguments: [
            ConfChange(kind: .addNode, nodeID: nid(1)),
            ConfChange(kind: .removeNode, nodeID: nid(UInt64.max), context: [0]),
            ConfChange(kind: .addLearnerNode, nodeID: nid(0x8000_0000_0000_0001), context: Array("http://10.0.0.1:2380".utf8)),
        ]
    )
    func roundTrip(change: ConfChange) {
        #expect(ConfChange(encoded: change.encoded()) == change)
    }

    @Test("the layout is kind, big-endian node ID, then context")
    func layout() {
        let change = ConfChange(kind: .addLearnerNode, nodeID: nid(0x0102_0304_0506_0708), context: [9, 10])
        #expect(change.encoded() == [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    }

    @Test("garbage does not decode", arguments: [[UInt8](), [0], [0, 0, 0, 0, 0, 0, 0, 1], [4, 0, 0, 0, 0, 0, 0, 0, 1], [255, 0, 0, 0, 0, 0, 0, 0, 1, 7]])
    func garbage(bytes: [UInt8]) {
        #expect(ConfChange(encoded: bytes) == nil)
    }
}

@Suite struct ReadOnlyQueueUnitTests {
    static func request(_ context: String) -> Message {
        Message(type: .readIndex, context: Array(context.utf8))
    }

    @Test("requests are kept in arrival order; a duplicate context is ignored")
    func addInOrder() {
        var queue = ReadOnlyQueue()
        queue.add(index: 3, request: Self.request("a"))
        queue.add(index: 4, request: Self.request("b"))
        queue.add(index: 9, request: Self.request("a"))
        #expect(queue.count == 2)
        #expect(queue.order == [Array("a".utf8), Array("b".utf8)])
        #expect(queue.pending[Array("a".utf8)]?.index == 3)
        #expect(queue.lastPendingContext == Array("b".utf8))
    }

    @Test("acknowledgements accumulate per context; unknown contexts give nil")
    func acknowledge() {
        var queue = ReadOnlyQueue()
        queue.add(index: 3, request: Self.request("a"))
        #expect(queue.acknowledge(from: nid(1), context: Array("a".utf8)) == [nid(1)])
        #expect(queue.acknowledge(from: nid(2), context: Array("a".utf8)) == [nid(1), nid(2)])
        #expect(queue.acknowledge(from: nid(2), context: Array("a".utf8)) == [nid(1), nid(2)])
        #expect(queue.acknowledge(from: nid(2), context: Array("x".utf8)) == nil)
    }

    @Test("advance releases every request up to and including the confirmed one, in order")
    func advance() {
        var queue = ReadOnlyQueue()
        for (position, context) in ["a", "b", "c", "d"].enumerated() {
            queue.add(index: UInt64(position + 1), request: Self.request(context))
        }
        let released = queue.advance(through: Array("b".utf8))
        #expect(released.map(\.request.context) == [Array("a".utf8), Array("b".utf8)])
        #expect(released.map(\.index) == [1, 2])
        #expect(queue.count == 2)
        #expect(queue.advance(through: Array("b".utf8)).isEmpty)
        #expect(queue.advance(through: Array("d".utf8)).map(\.index) == [3, 4])
        #expect(queue.count == 0)
        #expect(queue.lastPendingContext == nil)
        #expect(queue.pending.isEmpty)
    }
}

@Suite struct SplitMix64UnitTests {
    @Test("seed 0 produces the reference SplitMix64 sequence")
    func referenceVectors() {
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
        #expect(generator.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(generator.next() == 0x06C4_5D18_8009_454F)
    }

    @Test("the same seed replays the same sequence; different seeds differ")
    func determinism() {
        var first = SplitMix64(seed: 42)
        var second = SplitMix64(seed: 42)
        var other = SplitMix64(seed: 43)
        let a = (0..<100).map { _ in first.next() }
        let b = (0..<100).map { _ in second.next() }
        let c = (0..<100).map { _ in other.next() }
        #expect(a == b)
        #expect(a != c)
        #expect(Set(a).count == 100)
    }

    @Test("a seeded node draws the same election timeouts every run")
    func electionTimeoutsReplay() {
        func timeouts(seed: UInt64) -> [Int] {
            var raft = makeRaft(id: 1, seed: seed)
            return (0..<20).map { _ in
                raft.resetRandomizedElectionTimeout()
                return raft.randomizedElectionTimeout
            }
        }
        #expect(timeouts(seed: 7) == timeouts(seed: 7))
        #expect(timeouts(seed: 7) != timeouts(seed: 8))
        #expect(timeouts(seed: 7).allSatisfy { (10..<20).contains($0) })
    }
}
