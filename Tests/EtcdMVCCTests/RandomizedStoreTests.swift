import EtcdBackend
import Testing

@testable import EtcdMVCC

/// A brute-force MVCC: the full history of every key, never compacted, searched linearly.
private struct Model {
    struct Change {
        var main: Int64
        var kv: KeyValue?  // nil: deleted
    }

    var history: [[UInt8]: [Change]] = [:]
    var live: [[UInt8]: KeyValue] = [:]
    var events: [MVCCEvent] = []
    var current: Int64 = 1
    var compactMain: Int64 = -1

    func state(of key: [UInt8], at revision: Int64) -> KeyValue? {
        history[key]?.last(where: { $0.main <= revision })?.kv
    }

    func read(_ range: KeyRange, at revision: Int64) -> [KeyValue] {
        history.keys.filter(range.contains).sorted { compareBytes($0, $1) < 0 }.compactMap { state(of: $0, at: revision) }
    }

    mutating func put(_ key: [UInt8], _ value: [UInt8], lease: Int64, main: Int64) {
        let previous = live[key]
        let kv = KeyValue(
            key: key,
            createRevision: previous?.createRevision ?? main,
            modRevision: main,
            version: (previous?.version ?? 0) + 1,
            value: value,
            lease: lease
        )
        live[key] = kv
        history[key, default: []].append(Change(main: main, kv: kv))
        events.append(MVCCEvent(kind: .put, kv: kv))
    }

    mutating func delete(_ range: KeyRange, main: Int64) -> Int64 {
        let keys = live.keys.filter(range.contains).sorted { compareBytes($0, $1) < 0 }
        for key in keys {
            live[key] = nil
            history[key, default: []].append(Change(main: main, kv: nil))
            let kv = KeyValue(key: key, createRevision: 0, modRevision: main, version: 0, value: [], lease: 0)
            events.append(MVCCEvent(kind: .delete, kv: kv))
        }
        return Int64(keys.count)
    }

    /// Rows etcd keeps after compaction: everything newer, plus each key's newest change at or
    /// below the compaction point when that change is a put.
    var retainedRows: Int {
        let point = compactMain
        return history.values.reduce(0) { total, changes in
            let newer = changes.filter { $0.main > point }.count
            let keptOld = changes.last(where: { $0.main <= point })?.kv != nil ? 1 : 0
            return total + newer + keptOld
        }
    }
}

@Suite("MVCCStore against a brute-force model")
struct RandomizedStoreTests {
    private static let alphabet: [UInt8] = [0x00, 0x61, 0x62, 0xff]

    private func randomKey(_ rng: inout SeededGenerator) -> [UInt8] {
        (0..<Int.random(in: 0...2, using: &rng)).map { _ in Self.alphabet.randomElement(using: &rng) ?? 0 }
    }

    private func randomRange(_ rng: inout SeededGenerator) -> KeyRange {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: return .key(randomKey(&rng))
        case 1: return .fromKey(randomKey(&rng))
        default: return .range(randomKey(&rng), randomKey(&rng))
        }
    }

    private func expectedRead(
        _ model: Model,
        _ range: KeyRange,
        _ options: RangeOptions,
        current: Int64
    ) -> Result<RangeResult, MVCCError> {
        if options.revision > current { return .failure(.futureRevision) }
        let at = options.revision <= 0 ? current : options.revision
        if at < model.compactMain { return .failure(.compacted) }
        let all = model.read(range, at: at)
        var kvs = options.countOnly ? [] : all
        if options.limit > 0, kvs.count > Int(options.limit) {
            kvs = Array(kvs.prefix(Int(options.limit)))
        }
        return .success(RangeResult(kvs: kvs, revision: current, count: all.count))
    }

    private func check(
        _ actual: () throws(MVCCError) -> RangeResult,
        _ expected: Result<RangeResult, MVCCError>,
        _ context: String
    ) {
        switch (Result(catching: actual), expected) {
        case (.success(let got), .success(let want)):
            #expect(got.kvs == want.kvs, "\(context)")
            #expect(got.count == want.count, "\(context)")
            #expect(got.revision == want.revision, "\(context)")
        case (.failure(let got), .failure(let want)):
            #expect(got == want, "\(context)")
        case (let got, let want):
            Issue.record("\(context): got \(got), want \(want)")
        }
    }

    private func randomOptions(_ rng: inout SeededGenerator, _ model: Model, current: Int64) -> RangeOptions {
        let revision: Int64 =
            Bool.random(using: &rng) ? 0 : Int64.random(in: max(model.compactMain - 2, 0)...(current + 2), using: &rng)
        return RangeOptions(
            limit: Int64.random(in: 0...3, using: &rng),
            revision: revision,
            countOnly: Int.random(in: 0..<10, using: &rng) == 0
        )
    }

    @Test("random puts, deletes, compactions, aborts and restarts match the model")
    func againstModel() throws {
        var (rng, seed) = SeededGenerator.fromEnvironment("RandomizedStoreTests.againstModel")
        try withTemporaryDirectory { directory in
            var store = try openStore(directory)
            var model = Model()
            for step in 0..<2_000 {
                let context = "SEED=\(seed) step \(step)"
                switch Int.random(in: 0..<100, using: &rng) {
                case 0..<40:
                    try runBatch(store, &model, &rng, context)
                case 40..<75:
                    let range = randomRange(&rng)
                    let options = randomOptions(&rng, model, current: model.current)
                    check(
                        { () throws(MVCCError) in try store.range(range, options: options) },
                        expectedRead(model, range, options, current: model.current),
                        "\(context) range \(range) \(options)"
                    )
                case 75..<83:
                    let target = Int64.random(in: (model.compactMain - 1)...(model.current + 1), using: &rng)
                    let expected: MVCCError? =
                        target <= model.compactMain ? .compacted : (target > model.current ? .futureRevision : nil)
                    try store.beginBatch()
                    do throws(MVCCError) {
                        try store.compact(target)
                        // The rows go later, in steps; sometimes a few steps run in this batch.
                        for _ in 0..<Int.random(in: 0...2, using: &rng) {
                            try store.compactStep(limit: Int.random(in: 1...20, using: &rng))
                        }
                        try store.commitBatch()
                        #expect(expected == nil, "\(context) compact(\(target))")
                        model.compactMain = target
                    } catch {
                        #expect(error == expected, "\(context) compact(\(target))")
                        store.abortBatch()
                    }
                    #expect(
                        try rowCount(store) - Int64(store.pendingCompactionRowCount) == Int64(model.retainedRows),
                        "\(context) rows after compact(\(target))")
                case 88..<90 where store.pendingCompactionRowCount > 0:
                    // A compaction step in a batch that commits or is rolled back: either way the
                    // rows still waiting are exactly those the model no longer retains.
                    try store.beginBatch()
                    try store.compactStep(limit: Int.random(in: 1...30, using: &rng))
                    if Bool.random(using: &rng) { try store.commitBatch() } else { store.abortBatch() }
                    #expect(
                        try rowCount(store) - Int64(store.pendingCompactionRowCount) == Int64(model.retainedRows),
                        "\(context) rows after a compaction step")
                case 83..<88:
                    // Starting exactly at the compaction point may miss changes compacted away at
                    // that revision (etcd's watch behaves the same), so the model starts after it.
                    let start = Int64.random(in: max(model.compactMain + 1, 1)...(model.current + 1), using: &rng)
                    let events = try store.events(from: start)
                    let same = events == model.events.filter { $0.kv.modRevision >= start }
                    #expect(same, "\(context) events from \(start)")
                default:
                    store = try openStore(directory)
                    try checkRestart(store, model, &rng, context)
                }
                #expect(store.currentRevision == model.current, "\(context)")
                #expect(store.compactedRevision == max(model.compactMain, 0), "\(context)")
            }
        }
    }

    /// One batch of 1-3 write transactions, committed or (sometimes) aborted.
    private func runBatch(_ store: MVCCStore, _ model: inout Model, _ rng: inout SeededGenerator, _ context: String) throws {
        let before = model
        try store.beginBatch()
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let txn = store.beginWrite()
            let main = model.current + 1
            var changed = false
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<6:
                    let key = randomKey(&rng)
                    let value = (0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    let lease = Bool.random(using: &rng) ? 0 : Int64.random(in: 1...3, using: &rng)
                    try txn.put(key: key, value: value, lease: lease)
                    model.put(key, value, lease: lease, main: main)
                    changed = true
                case 6..<9:
                    let range = randomRange(&rng)
                    let deleted = try txn.deleteRange(range)
                    let expected = model.delete(range, main: main)
                    #expect(deleted == expected, "\(context) deleteRange \(range)")
                    changed = changed || expected > 0
                default:
                    // Inside the transaction, reads see its own changes at its own revision.
                    let range = randomRange(&rng)
                    let reading = changed ? main : model.current
                    let options = randomOptions(&rng, model, current: reading)
                    check(
                        { () throws(MVCCError) in try txn.range(range, options: options) },
                        expectedRead(model, range, options, current: reading),
                        "\(context) txn range \(range) \(options)"
                    )
                }
            }
            #expect((txn.changeCount > 0) == changed, "\(context)")
            txn.end()
            if changed { model.current = main }
        }
        if Int.random(in: 0..<10, using: &rng) == 0 {
            store.abortBatch()
            model = before
        } else {
            try store.commitBatch()
        }
    }

    /// After reopening: the same revisions, and the same reads at a sample of retained revisions.
    private func checkRestart(_ store: MVCCStore, _ model: Model, _ rng: inout SeededGenerator, _ context: String) throws {
        #expect(store.currentRevision == model.current, "\(context) restart")
        #expect(store.compactedRevision == max(model.compactMain, 0), "\(context) restart")
        let lowest = max(model.compactMain, 1)
        var revisions: Set<Int64> = [lowest, model.current]
        for _ in 0..<8 {
            revisions.insert(Int64.random(in: lowest...model.current, using: &rng))
        }
        for revision in revisions.sorted() {
            let options = RangeOptions(revision: revision)
            check(
                { () throws(MVCCError) in try store.range(.fromKey([]), options: options) },
                expectedRead(model, .fromKey([]), options, current: model.current),
                "\(context) restart read at \(revision)"
            )
        }
        // A restart finds the rows a compaction had yet to delete, and deleting them resumes.
        #expect(
            try rowCount(store) - Int64(store.pendingCompactionRowCount) == Int64(model.retainedRows),
            "\(context) rows after restart")
        try store.beginBatch()
        while store.pendingCompactionRowCount > 0 { try store.compactStep(limit: 25) }
        try store.commitBatch()
        #expect(store.physicallyCompactedRevision == model.compactMain, "\(context) compaction finished after restart")
        #expect(try rowCount(store) == Int64(model.retainedRows), "\(context) rows after the resumed compaction")
    }
}
