import Testing

@testable import EtcdMVCC

@Suite("Watch groups (synced, unsynced, catch-up)")
struct WatchGroupsTests {
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    private static func put(_ key: String, at revision: Int64) -> MVCCEvent {
        MVCCEvent(kind: .put, kv: KeyValue(key: bytes(key), createRevision: revision, modRevision: revision, version: 1, value: [1], lease: 0))
    }

    private static func delete(_ key: String, at revision: Int64) -> MVCCEvent {
        MVCCEvent(kind: .delete, kv: KeyValue(key: bytes(key), createRevision: 0, modRevision: revision, version: 0, value: [], lease: 0))
    }

    @Test("a watcher from now gets new revisions; one from the past catches up first, then joins")
    func syncedAndUnsynced() {
        var groups = WatchGroups<Int>(currentRevision: 5)
        do {
            let result = groups.add(1, range: .key(Self.bytes("a")), startRevision: 0)
            #expect(result)
        }
        do {
            let result = groups.add(2, range: .fromKey(Self.bytes("a")), startRevision: 3)
            #expect(result)
        }
        #expect(groups.isSynced(1))
        #expect(!groups.isSynced(2))
        #expect(groups.catchUpStart == 3)

        let first = groups.publish(revision: 6, events: [Self.put("a", at: 6), Self.put("b", at: 6)])
        #expect(first == [.init(watcher: 1, events: [Self.put("a", at: 6)])], "the unsynced watcher waits for history")

        // History 3...6 as the store would return it.
        let history = [Self.put("x", at: 3), Self.delete("x", at: 4), Self.put("a", at: 6), Self.put("b", at: 6)]
        let caughtUp = groups.catchUp(events: history, through: 6)
        #expect(caughtUp == [.init(watcher: 2, events: history)])
        #expect(groups.isSynced(2))
        let next = groups.publish(revision: 7, events: [Self.delete("a", at: 7)])
        #expect(Set(next.map(\.watcher)) == [1, 2])
    }

    @Test("after the store is replaced by a newer one, synced watchers catch up from where they were; future ones keep waiting")
    func restoreFromSnapshot() {
        var groups = WatchGroups<Int>(currentRevision: 5)
        let added = (groups.add(1, range: .key(Self.bytes("a")), startRevision: 0),
                     groups.add(2, range: .key(Self.bytes("a")), startRevision: 40))
        #expect(added == (true, true))
        groups.restore(currentRevision: 30)
        #expect(groups.currentRevision == 30)
        #expect(!groups.isSynced(1))
        #expect(groups.catchUpStart == 6, "history after what it was handed")
        #expect(groups.watch(2)?.nextRevision == 40)
        // Revision 6 is gone from the new store (compacted up to 10): the watcher is cancelled.
        let cancelled = groups.removeCompacted(below: 10)
        #expect(cancelled == [1])
        // Watcher 2 waits for revision 40; nothing goes to the cancelled one.
        let published = groups.publish(revision: 31, events: [Self.put("a", at: 31)])
        #expect(published.isEmpty)
    }

    @Test("filters drop puts or deletes; a future start waits for its revision")
    func filtersAndFutureStart() {
        var groups = WatchGroups<Int>(currentRevision: 1)
        do {
            let result = groups.add(1, range: .fromKey([0]), startRevision: 0, skipsPuts: true)
            #expect(result)
        }
        do {
            let result = groups.add(2, range: .fromKey([0]), startRevision: 0, skipsDeletes: true)
            #expect(result)
        }
        do {
            let result = groups.add(3, range: .fromKey([0]), startRevision: 4)
            #expect(result)
        }
        do {
            let result = groups.publish(revision: 2, events: [Self.put("a", at: 2)])
            #expect(result == [.init(watcher: 2, events: [Self.put("a", at: 2)])])
        }
        do {
            let result = groups.publish(revision: 3, events: [Self.delete("a", at: 3)])
            #expect(result == [.init(watcher: 1, events: [Self.delete("a", at: 3)])])
        }
        do {
            let result = groups.publish(revision: 4, events: [Self.put("b", at: 4)])
            #expect(Set(result.map(\.watcher)) == [2, 3])
        }
    }

    @Test("duplicate IDs and empty ranges are refused; compacted history cancels unsynced watchers")
    func refusalsAndCompaction() {
        var groups = WatchGroups<Int>(currentRevision: 10)
        do {
            let result = groups.add(1, range: .key(Self.bytes("a")), startRevision: 2)
            #expect(result)
        }
        do {
            let result = groups.add(1, range: .key(Self.bytes("b")), startRevision: 0)
            #expect(!result)
        }
        do {
            let result = groups.add(2, range: .range(Self.bytes("b"), Self.bytes("a")), startRevision: 0)
            #expect(!result)
        }
        do {
            let result = groups.add(3, range: .range(Self.bytes("b"), Self.bytes("a")), startRevision: 2)
            #expect(!result)
        }
        do {
            let result = groups.add(4, range: .key(Self.bytes("a")), startRevision: 6)
            #expect(result)
        }
        do {
            let result = groups.removeCompacted(below: 5)
            #expect(result == [1])
        }
        #expect(groups.count == 1)
        do {
            let result = groups.remove(4)
            #expect(result)
        }
        do {
            let result = groups.remove(4)
            #expect(!result)
        }
    }

    /// A store's history as a model: events by revision.
    struct History {
        var revisions: [Int64: [MVCCEvent]] = [:]
        var current: Int64 = 1

        func events(from start: Int64, through end: Int64) -> [MVCCEvent] {
            guard start <= end else { return [] }
            return (start...end).flatMap { revisions[$0] ?? [] }
        }
    }

    @Test(
        "random writes, watchers from random revisions, demotions and catch-up in random batches: every watcher gets exactly its events, in order, once",
        arguments: Array(1...40) as [UInt64]
    )
    func randomized(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let keys = ["a", "b", "c", "d", "e"]
        var history = History()
        var groups = WatchGroups<Int>(currentRevision: history.current)
        var received: [Int: [MVCCEvent]] = [:]
        var registrations: [Int: (range: KeyRange, start: Int64, skipsPuts: Bool, skipsDeletes: Bool)] = [:]
        var nextWatcher = 0
        var pendingRead: (start: Int64, through: Int64, readyParity: Int)?

        func record(_ deliveries: [WatchGroups<Int>.Delivery]) {
            for delivery in deliveries {
                let revisions = delivery.events.map(\.kv.modRevision)
                #expect(revisions == revisions.sorted(), "seed \(seed): a delivery out of order")
                received[delivery.watcher, default: []] += delivery.events
            }
        }

        for _ in 0..<600 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0...3:  // a write revision of 1-3 changes
                let revision = history.current + 1
                let events = (0..<Int.random(in: 1...3, using: &random)).map { _ in
                    let key = keys.randomElement(using: &random)!
                    return Bool.random(using: &random) ? Self.put(key, at: revision) : Self.delete(key, at: revision)
                }
                history.revisions[revision] = events
                history.current = revision
                record(groups.publish(revision: revision, events: events))
            case 4...5:  // a new watcher
                let key = keys.randomElement(using: &random)!
                let range: KeyRange = [KeyRange.key(Self.bytes(key)), .fromKey(Self.bytes(key)), .range(Self.bytes("b"), Self.bytes("d"))]
                    .randomElement(using: &random)!
                let start = Int64.random(in: 0...(history.current + 3), using: &random)
                let skipsPuts = Int.random(in: 0..<5, using: &random) == 0
                let skipsDeletes = !skipsPuts && Int.random(in: 0..<5, using: &random) == 0
                do {
                    let result = groups.add(nextWatcher, range: range, startRevision: start, skipsPuts: skipsPuts, skipsDeletes: skipsDeletes)
                    #expect(result)
                }
                registrations[nextWatcher] = (range, start <= 0 ? history.current + 1 : start, skipsPuts, skipsDeletes)
                nextWatcher += 1
            case 6:  // a slow consumer: back to catch-up from where it is
                if let id = registrations.keys.sorted().randomElement(using: &random), let watch = groups.watch(id) {
                    groups.demote(id, nextRevision: watch.nextRevision)
                }
            default:
                // A catch-up round as the server runs it: decide where to read (for the watchers
                // whose consumers have room, here a random half), read history without holding
                // the groups, and hand it over later, after other writes, watchers and demotions
                // may have come in between.
                if let read = pendingRead {
                    pendingRead = nil
                    record(
                        groups.catchUp(
                            events: history.events(from: read.start, through: read.through), from: read.start,
                            through: read.through, where: { $0 % 2 == read.readyParity }
                        )
                    )
                } else {
                    let parity = Int.random(in: 0...1, using: &random)
                    if let start = groups.catchUpStart(where: { $0 % 2 == parity }) {
                        let through = min(history.current, start + Int64.random(in: 0...4, using: &random))
                        pendingRead = (start, through, parity)
                    }
                }
            }
        }
        while let start = groups.catchUpStart {
            record(groups.catchUp(events: history.events(from: start, through: history.current), through: history.current))
        }
        for (id, registration) in registrations {
            let expected = history.events(from: registration.start, through: history.current).filter { event in
                registration.range.contains(event.kv.key)
                    && !(event.kind == .put ? registration.skipsPuts : registration.skipsDeletes)
            }
            #expect(received[id] ?? [] == expected, "seed \(seed): watcher \(id) from \(registration.start) on \(registration.range)")
        }
    }
}
