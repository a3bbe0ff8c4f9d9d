import EtcdRaft
import Testing

/// Findings of the simulator that are not fixed yet, kept as known issues so that a fix shows up
/// as an unexpected pass.
@Suite struct LeaseReadTests {
    /// Lease-based reads are stale after a partition even with every clock in lockstep.
    ///
    /// The leader's lease is CheckQuorum's: it steps down only at the first check that finds no
    /// quorum active, up to two election timeouts after it last heard from one. Followers stop
    /// honouring the old leader one election timeout after its last heartbeat and elect a new
    /// one, which commits writes while the old leader still answers reads from its lease. A
    /// safe lease needs the time the acknowledged heartbeat was *sent* (and a bound on drift).
    @Test("Lease-based reads stay linearizable across a partition of the leader (SEED=7502700366000358609)")
    func leaseReadAfterPartition() {
        let seed: UInt64 = 7_502_700_366_000_358_609
        print("LeaseReadTests SEED=\(seed) (replay with SEED=\(seed) SIM_LEASE_READS=1)")
        let simulator = ClusterSimulator(seed: seed) { profile in
            profile.readOnlyOption = .leaseBased
            profile.tickSkipRate = 0
        }
        let outcome = simulator.run(steps: 2000)
        withKnownIssue("lease reads are served by a deposed leader; see the test's comment") {
            if let failure = outcome.failure {
                Issue.record("\(failure)")
            }
        }
    }
}
