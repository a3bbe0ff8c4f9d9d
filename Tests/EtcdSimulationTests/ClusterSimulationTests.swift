import EtcdRaft
import Testing

/// Randomized whole-cluster runs. Each seed derives a cluster (3 to 7 members), fault rates and
/// a schedule; every step is followed by the safety checks, and every run ends with a liveness
/// check. See `SimulationSettings` for the environment variables (`SEED=n` replays one seed with
/// its full trace).
@Suite struct ClusterSimulationTests {
    /// Seeds are split over this many test cases so that swift-testing runs them in parallel.
    static let shardCount = 8

    @Test("Randomized cluster runs keep Raft's safety properties and stay live", arguments: 0..<shardCount)
    func randomizedRuns(shard: Int) async {
        // Off the cooperative pool; the failure is recorded here, where the test's context is.
        if let failure = await OffPoolRunner.run({ runShard(shard) }) {
            Issue.record(Comment(rawValue: failure))
        }
    }

    /// Runs the shard's seeds, stopping at the first failure, which it returns.
    private func runShard(_ shard: Int) -> String? {
        _ = CrashSeedReporter.install
        if let seed = SimulationSettings.replaySeed {
            guard shard == 0 else { return nil }
            print("simulation: replaying SEED=\(seed) with \(SimulationSettings.steps) steps")
            return runSeed(seed, shard: shard, printsTrace: true)
        }
        let first = SimulationSettings.firstSeed
        let count = SimulationSettings.seedCount
        let seeds = stride(from: shard, to: count, by: Self.shardCount).map { first &+ UInt64($0) }
        guard let firstSeed = seeds.first, let lastSeed = seeds.last else { return nil }
        print(
            "simulation shard \(shard): \(seeds.count) seeds from \(firstSeed) to \(lastSeed) step \(Self.shardCount), "
                + "\(SimulationSettings.steps) steps each (SIM_FIRST_SEED=\(first) SIM_SEEDS=\(count))")
        for seed in seeds {
            // Stop at the first failure of this shard: one seed with its trace is what matters.
            if let failure = runSeed(seed, shard: shard, printsTrace: false) { return failure }
        }
        return nil
    }

    /// Runs one seed; on failure prints the report and returns what failed.
    private func runSeed(_ seed: UInt64, shard: Int, printsTrace: Bool) -> String? {
        CrashSeedReporter.set(slot: shard, seed: seed)
        defer { CrashSeedReporter.set(slot: shard, seed: nil) }
        let simulator = ClusterSimulator(seed: seed, printsTrace: printsTrace)
        let outcome = simulator.run(steps: SimulationSettings.steps)
        if printsTrace {
            let statistics = simulator.statistics
            print(
                "simulation SEED=\(seed): \(simulator.step) steps, \(statistics.ticks) ticks, "
                    + "\(statistics.delivered) delivered, \(statistics.dropped) dropped, \(statistics.elections) elections, "
                    + "\(statistics.crashes) crashes, \(statistics.snapshotsTaken) snapshots taken, "
                    + "\(statistics.snapshotsInstalled) installed, \(statistics.confChangesApplied) conf changes applied, "
                    + "\(simulator.safety.committedCount) entries committed, "
                    + "\(simulator.linearizability.completedWrites) writes and "
                    + "\(simulator.linearizability.completedReads) reads completed")
        }
        guard let failure = outcome.failure else { return nil }
        print(outcome.report)
        return "SEED=\(seed): \(failure)"
    }
}
