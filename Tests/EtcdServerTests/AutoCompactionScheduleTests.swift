@testable import EtcdServer
import Testing

/// etcd's compactor timing (v3compactor's periodic and revision compactors), on a pretend clock.
@Suite("Automatic compaction schedule")
struct AutoCompactionScheduleTests {
    /// Ticks `schedule` from `from` until `until` (exclusive), the revision growing by 10 per
    /// tick; returns what it decided, with the tick's time, and reports every compaction as done.
    private static func run(
        _ schedule: inout AutoCompactionSchedule, from: Duration, until: Duration, revision: (Duration) -> Int64,
        leading: (Duration) -> Bool = { _ in true }, fails: (Duration) -> Bool = { _ in false }
    ) -> [(Duration, Int64)] {
        var decisions: [(Duration, Int64)] = []
        var now = from + schedule.tickInterval
        while now < until {
            if let target = schedule.tick(currentRevision: revision(now), now: now, leading: leading(now)) {
                decisions.append((now, target))
                if !fails(now) { schedule.compacted(target, now: now) }
            }
            now += schedule.tickInterval
        }
        return decisions
    }

    @Test("periodic, 10 s: nothing for the first 10 s, then every 10 s the revision sampled 10 s before")
    func periodicShort() {
        var schedule = AutoCompactionSchedule(.periodic(.seconds(10)), startRevision: 1, now: .zero)
        #expect(schedule.tickInterval == .seconds(1))
        // The revision is 100 per second elapsed (+1).
        let decisions = Self.run(&schedule, from: .zero, until: .seconds(41)) { Int64($0 / .seconds(1)) * 100 + 1 }
        #expect(decisions.map(\.0) == [.seconds(10), .seconds(20), .seconds(30), .seconds(40)])
        // At 10 s the oldest sample is the start's; later, etcd keeps 11 samples (the retention
        // divided by the tick, plus one), so the one compacted to is 11 s old.
        #expect(decisions.map(\.1) == [1, 901, 1_901, 2_901])
    }

    @Test("periodic, 2 h: samples every 6 min, first compaction after 2 h at the start's revision, then hourly")
    func periodicLong() {
        var schedule = AutoCompactionSchedule(.periodic(.seconds(7_200)), startRevision: 5, now: .zero)
        #expect(schedule.tickInterval == .seconds(360))
        let decisions = Self.run(&schedule, from: .zero, until: .seconds(4 * 3_600 + 1)) { Int64($0 / .seconds(360)) + 5 }
        #expect(decisions.map(\.0) == [.seconds(7_200), .seconds(10_800), .seconds(14_400)])
        // Later compactions keep two hours and a tick: the oldest of the 21 samples kept.
        #expect(decisions.map(\.1) == [5, 14, 24])
    }

    @Test("periodic: a member that does not lead only samples; a failed compaction is retried at the next tick")
    func periodicFollowerAndRetry() {
        var schedule = AutoCompactionSchedule(.periodic(.seconds(10)), startRevision: 1, now: .zero)
        let decisions = Self.run(
            &schedule, from: .zero, until: .seconds(16), revision: { Int64($0 / .seconds(1)) * 100 + 1 },
            leading: { $0 >= .seconds(12) }, fails: { $0 == .seconds(12) })
        // Leads from 12 s: compacts then (fails), again at 13 s (succeeds), then not until 23 s;
        // the samples taken while following count.
        #expect(decisions.map(\.0) == [.seconds(12), .seconds(13)])
        #expect(decisions.map(\.1) == [101, 201])
    }

    @Test("revision mode: every 5 min, the revision `retention` behind the current one, never the same twice, never at or below 0")
    func revisionMode() {
        var schedule = AutoCompactionSchedule(.revision(1_000), startRevision: 1, now: .zero)
        #expect(schedule.tickInterval == .seconds(300))
        // 500 at 5 min (nothing), 1,500 at 10 min, 1,500 at 15 min (unchanged), 3,000 at 20 min.
        let revisions: [Duration: Int64] = [.seconds(300): 500, .seconds(600): 1_500, .seconds(900): 1_500, .seconds(1_200): 3_000]
        let decisions = Self.run(&schedule, from: .zero, until: .seconds(1_201)) { revisions[$0] ?? 0 }
        #expect(decisions.map(\.0) == [.seconds(600), .seconds(1_200)])
        #expect(decisions.map(\.1) == [500, 2_000])
    }
}
