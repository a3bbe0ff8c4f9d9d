import EtcdRaft
import Testing

/// Lease-based reads under partitions, crashes and transfers, on seeds that once broke them.
@Suite struct LeaseReadTests {
    /// Seed 7502700366000358609 found lease reads served by a deposed leader when the lease was
    /// CheckQuorum's (as in etcd-io/raft): a partitioned leader steps down only at the first
    /// check that finds no quorum, up to two election timeouts after it last heard from one,
    /// while followers elect a new leader after one. The lease is now measured from when the
    /// acknowledged heartbeats were sent, and restarted members honour it too.
    @Test(
        "Lease-based reads stay linearizable across a partition of the leader",
        arguments: [7_502_700_366_000_358_609, 1, 2, 3, 4, 5, 6, 7] as [UInt64]
    )
    func leaseReadsStayLinearizable(seed: UInt64) {
        print("LeaseReadTests SEED=\(seed)")
        let simulator = ClusterSimulator(seed: seed) { profile in
            profile.readOnlyOption = .leaseBased
            profile.tickSkipRate = 0
        }
        let outcome = simulator.run(steps: 2000)
        if let failure = outcome.failure {
            Issue.record("\(failure)")
        }
        #expect(simulator.linearizability.completedReads > 0, "the seed must exercise reads")
    }
}
