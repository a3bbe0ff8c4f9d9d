@testable import EtcdRaft
import Foundation
import Testing

/// The safety properties of figure 3 of the Raft paper (§5.2 election safety, §5.3 log matching,
/// §5.4 leader completeness and state machine safety), checked after every step of a seeded run
/// with message loss, duplication, reordering, partitions and crash-restarts. `SEED=n` replays
/// one seed; a failure names its seed.
@Suite struct RaftPaperSafetyTests {
    struct Options: Sendable, CustomTestStringConvertible {
        var preVote: Bool
        var checkQuorum: Bool
        var testDescription: String { "preVote \(preVote), checkQuorum \(checkQuorum)" }
    }

    static var seeds: [UInt64] {
        if let text = ProcessInfo.processInfo.environment["SEED"], let seed = UInt64(text) { return [seed] }
        return Array(1...12)
    }

    @Test(
        "§5.2/§5.3/§5.4: election safety, log matching, leader completeness and state machine safety under faults",
        arguments: [Options(preVote: false, checkQuorum: false), Options(preVote: true, checkQuorum: true)]
    )
    func safetyUnderFaults(options: Options) {
        for seed in Self.seeds {
            var simulation = Simulation(seed: seed, options: options)
            simulation.run(steps: 3000)
            simulation.healAndCheckLiveness()
            // The run must have exercised what it checks: several elected terms and real commits.
            #expect(simulation.leaders.count >= 3, "seed \(seed): only \(simulation.leaders.count) terms had a leader")
            #expect(simulation.committed.count >= 20, "seed \(seed): only \(simulation.committed.count) entries committed")
        }
    }

    struct Simulation {
        let seed: UInt64
        let options: Options
        let ids: [UInt64] = [1, 2, 3, 4, 5]
        var random: SplitMix64
        var nodes: [UInt64: Raft] = [:]
        var storages: [UInt64: MemoryStorage] = [:]
        var inFlight: [Message] = []
        var isolated: UInt64?
        var proposals = 0
        /// Election safety: the one leader seen for each term.
        var leaders: [UInt64: UInt64] = [:]
        /// State machine safety: the entry committed at each index, by whoever committed first.
        var committed: [UInt64: Entry] = [:]
        var checkedCommit: [UInt64: UInt64] = [:]

        init(seed: UInt64, options: Options) {
            self.seed = seed
            self.options = options
            random = SplitMix64(seed: seed)
            for id in ids {
                storages[id] = makeStorage(voters: ids)
                nodes[id] = makeNode(id)
            }
        }

        mutating func makeNode(_ id: UInt64) -> Raft {
            let options = options
            return makeRaft(id: id, voters: ids, storage: storages[id], seed: random.next()) {
                $0.preVote = options.preVote
                $0.checkQuorum = options.checkQuorum
            }
        }

        mutating func pick(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }

        mutating func run(steps: Int) {
            for step in 0..<steps {
                let roll = pick(100)
                switch roll {
                case 0..<45: deliverOne()
                case 45..<80: tick(ids[pick(ids.count)])
                case 80..<90: propose(ids[pick(ids.count)])
                case 90..<95: isolated = isolated == nil ? ids[pick(ids.count)] : nil
                case 95..<97: restart(ids[pick(ids.count)])
                default: inFlight.shuffle(using: &random)
                }
                check(step: step)
            }
        }

        mutating func deliverOne() {
            guard !inFlight.isEmpty else { return }
            let position = pick(inFlight.count)
            let message = inFlight[position]
            // One in ten messages is lost; one in twenty is delivered and kept for a duplicate.
            let roll = pick(20)
            if roll >= 1 { inFlight.remove(at: position) }
            if roll < 2 { return }
            if let isolated, message.to.rawValue == isolated || message.from.rawValue == isolated { return }
            guard var node = nodes[message.to.rawValue] else { return }
            try? node.step(message)
            settle(&node)
        }

        mutating func tick(_ id: UInt64) {
            guard var node = nodes[id] else { return }
            node.tick()
            settle(&node)
        }

        mutating func propose(_ id: UInt64) {
            guard var node = nodes[id] else { return }
            proposals += 1
            let data = Array("p\(proposals)".utf8)
            try? node.step(Message(type: .propose, from: node.id, entries: [Entry(term: 0, index: 0, data: data)]))
            settle(&node)
        }

        /// Crash and restart from what was persisted (everything, synchronously, after each step).
        mutating func restart(_ id: UInt64) {
            inFlight.removeAll { $0.to.rawValue == id }
            nodes[id] = makeNode(id)
        }

        /// Persists, applies and sends what the node produced, as a Ready cycle would.
        mutating func settle(_ node: inout Raft) {
            guard let memberStorage = storages[node.id.rawValue] else { return }
            node.persist(to: memberStorage)
            node.log.applied(to: node.log.committed)
            inFlight.append(contentsOf: node.readMessages())
            nodes[node.id.rawValue] = node
        }

        mutating func check(step: Int) {
            let context = "seed \(seed) step \(step)"
            for id in ids {
                guard let node = nodes[id] else { continue }
                if node.role == .leader {
                    if let known = leaders[node.term] {
                        #expect(known == id, "two leaders in term \(node.term): \(known) and \(id), \(context)")
                    } else {
                        leaders[node.term] = id
                        // Leader completeness: a new leader holds every committed entry.
                        for (index, entry) in committed {
                            #expect(node.entryForTest(at: index) == entry, "leader \(id) of term \(node.term) lacks committed \(index), \(context)")
                        }
                    }
                }
                // State machine safety: nobody commits a different entry at the same index.
                let from = (checkedCommit[id] ?? 0) + 1
                if node.log.committed >= from {
                    for index in from...node.log.committed {
                        guard let entry = node.entryForTest(at: index) else { continue }
                        if let known = committed[index] {
                            #expect(known == entry, "node \(id) committed a different entry at \(index), \(context)")
                        } else {
                            committed[index] = entry
                        }
                    }
                }
                checkedCommit[id] = node.log.committed
            }
            if step % 100 == 99 { checkLogMatching(context) }
        }

        /// Log matching: if two logs hold an entry with the same index and term, they are
        /// identical up to it.
        func checkLogMatching(_ context: String) {
            let logs = ids.compactMap { nodes[$0]?.allEntriesForTest }
            for first in logs.indices {
                for second in logs.indices where second > first {
                    let common = min(logs[first].count, logs[second].count)
                    guard let matchingEnd = (0..<common).last(where: { logs[first][$0].term == logs[second][$0].term }) else { continue }
                    #expect(Array(logs[first][...matchingEnd]) == Array(logs[second][...matchingEnd]), "log matching, \(context)")
                }
            }
        }

        /// Liveness is checked apart from safety: once faults stop, a leader emerges and commits.
        mutating func healAndCheckLiveness() {
            isolated = nil
            var rounds = 0
            while rounds < 300 && !ids.contains(where: { nodes[$0]?.role == .leader }) {
                rounds += 1
                for id in ids { tick(id) }
                deliverAll()
            }
            guard let leader = ids.first(where: { nodes[$0]?.role == .leader }) else {
                Issue.record("no leader 300 rounds after healing, seed \(seed)")
                return
            }
            propose(leader)
            deliverAll()
            for id in ids { tick(id) }
            deliverAll()
            let target = nodes[leader]?.log.lastIndex ?? 0
            for id in ids {
                #expect(nodes[id]?.log.committed == target, "node \(id) did not commit \(target) after healing, seed \(seed)")
            }
            check(step: -1)
        }

        mutating func deliverAll() {
            var budget = 100_000
            while !inFlight.isEmpty && budget > 0 {
                budget -= 1
                let message = inFlight.removeFirst()
                guard var node = nodes[message.to.rawValue] else { continue }
                try? node.step(message)
                settle(&node)
            }
        }
    }
}

extension Raft {
    func entryForTest(at index: UInt64) -> Entry? {
        guard index >= log.firstIndex && index <= log.lastIndex else { return nil }
        return (try? log.slice(from: index, to: index + 1, maxBytes: Int.max))?.first
    }
}
