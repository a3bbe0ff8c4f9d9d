import Foundation
import Testing

@testable import EtcdBenchmark

/// watch-mixed's event counts are only meaningful if the plan puts every watcher on exactly one
/// stream and its expected totals match what the watchers can actually see.
@Suite("watch-mixed plan")
struct WatchMixedPlanTests {
    private func plan(distinct: Int = 10, streams: Int = 3, hot: Int = 4, hotStreams: Int = 0) -> WatchMixedPlan {
        WatchMixedPlan(
            prefix: "p",
            distinctWatchers: distinct,
            distinctStreams: streams,
            hotWatchers: hot,
            hotStreams: hotStreams,
            hotKeys: 5
        )
    }

    private func allTargets(_ plan: WatchMixedPlan) -> [WatchMixedPlan.Target] {
        (0..<plan.streamCount).flatMap { plan.targets(onStream: $0) }
    }

    @Test(
        "Every distinct key is watched once and every hot watcher is placed, spread or on its own streams",
        arguments: [0, 2]
    )
    func everyWatcherOnce(hotStreams: Int) {
        let plan = plan(distinct: 10, streams: 3, hot: 4, hotStreams: hotStreams)
        let targets = allTargets(plan)
        #expect(targets.count == 14)
        let keys = targets.compactMap { target -> [UInt8]? in
            if case .key(let key) = target { return key }
            return nil
        }
        #expect(Set(keys) == Set((0..<10).map { plan.distinctKey($0) }))
        #expect(keys.count == 10)
        #expect(targets.filter { $0 == .prefix(Array("p/h/".utf8)) }.count == 4)
        // Key i rides on stream i % 3, so consecutive distinct puts reach different streams.
        #expect(
            plan.targets(onStream: 1).prefix(3) == [
                .key(plan.distinctKey(1)), .key(plan.distinctKey(4)), .key(plan.distinctKey(7)),
            ]
        )
        if hotStreams == 0 {
            // Four hot watchers over three streams: 2, 1, 1.
            #expect(
                (0..<3).map { plan.targets(onStream: $0).filter { $0 == .prefix(plan.hotPrefix) }.count } == [2, 1, 1]
            )
        } else {
            #expect(plan.streamCount == 5)
            #expect(plan.targets(onStream: 3) == [.prefix(plan.hotPrefix), .prefix(plan.hotPrefix)])
        }
    }

    @Test("Even puts walk the distinct keys round robin, odd puts go under the hot prefix")
    func putAlternation() {
        let plan = plan(distinct: 3)
        let puts = (0..<8).map { plan.put($0) }
        #expect(puts.map(\.eventClass) == [.distinct, .hot, .distinct, .hot, .distinct, .hot, .distinct, .hot])
        #expect(
            puts.map { String(decoding: $0.key, as: UTF8.self) } == [
                "p/d/0", "p/h/0", "p/d/1", "p/h/1", "p/d/2", "p/h/2", "p/d/0", "p/h/3",
            ]
        )
        // Each put's key is classified as the class the plan says it belongs to.
        for put in puts {
            #expect(plan.eventClass(ofKey: Data(put.key)) == put.eventClass)
        }
        // "p/d/…" must never be taken for the hot prefix "p/h/".
        #expect(plan.eventClass(ofKey: Data("p/hx".utf8)) == .distinct)
    }

    @Test("Expected events: one per distinct put, one per hot watcher per hot put")
    func expectedEvents() {
        let counts = plan(distinct: 10, hot: 4).expectedEvents(distinctPuts: 7, hotPuts: 6)
        #expect(counts.distinct == 7)
        #expect(counts.hot == 24)
        let noDistinct = plan(distinct: 0, hot: 4).expectedEvents(distinctPuts: 7, hotPuts: 6)
        #expect(noDistinct.distinct == 0)
        #expect(noDistinct.hot == 24)
    }

    @Test("Prefix range ends as etcd computes them")
    func rangeEnds() {
        #expect(WatchMixedPlan.rangeEnd(ofPrefix: Array("a/h/".utf8)) == Array("a/h0".utf8))
        #expect(WatchMixedPlan.rangeEnd(ofPrefix: [0x61, 0xff]) == [0x62])
        #expect(WatchMixedPlan.rangeEnd(ofPrefix: [0xff, 0xff]) == [0])
        let hot = WatchMixedPlan.range(of: .prefix(Array("a/".utf8)))
        #expect(hot.key == Array("a/".utf8))
        #expect(hot.rangeEnd == Array("a0".utf8))
        #expect(WatchMixedPlan.range(of: .key([1, 2])) == ([1, 2], []))
    }
}
