import EtcdRaft
import Testing

/// Targeted properties that the simulator makes easy to set up: with PreVote and CheckQuorum on
/// (the defaults), a member that was cut off, or removed while cut off, does not disrupt a
/// healthy majority when it comes back (Raft thesis §9.6 and §4.2.3).
@Suite struct RejoinTests {
    static let seeds: [UInt64] = Array(1...12)

    /// A fault-free profile (short delays, no loss) of `size` members with safe reads.
    static func quiet(size: Int) -> (inout SimProfile) -> Void {
        { profile in
            profile.clusterSize = size
            profile.readOnlyOption = .safe
            profile.tickSkipRate = 0
        }
    }

    /// Runs until a leader committed a write, with faults off; returns the leader and its term.
    static func settle(_ simulator: ClusterSimulator) throws -> (leader: NodeID, term: UInt64) {
        try simulator.bootstrap()
        try simulator.checkLiveness()
        let leader = try #require(simulator.currentLeader)
        return (leader.id, leader.term)
    }

    static func expectUndisturbed(
        _ simulator: ClusterSimulator, leader: NodeID, term: UInt64, ignoring rejoined: NodeID
    ) {
        #expect(simulator.currentLeader?.id == leader, "seed \(simulator.seed): the leader changed")
        for node in simulator.nodes where node.isRunning && node.id != rejoined {
            #expect(node.term == term, "seed \(simulator.seed): member \(node.id) moved to term \(node.term) from \(term)")
        }
        #expect(
            simulator.safety.leaders.keys.max() == term,
            "seed \(simulator.seed): a later term had a leader: \(simulator.safety.leaders.keys.sorted())")
    }

    @Test("A member cut off from the group rejoins without changing the leader or the term", arguments: seeds)
    func isolatedFollowerRejoins(seed: UInt64) throws {
        print("RejoinTests.isolatedFollowerRejoins SEED=\(seed)")
        let simulator = ClusterSimulator(seed: seed, adjust: Self.quiet(size: 5))
        simulator.faultsEnabled = false
        let (leader, term) = try Self.settle(simulator)
        let follower = try #require(simulator.nodes.first { $0.id != leader }).id
        simulator.isolate(follower)
        // Twenty election timeouts alone: it keeps pre-campaigning, which never raises its term.
        try simulator.runTicks(20 * ClusterSimulator.electionTicks)
        #expect(simulator.node(follower)?.term == term, "seed \(seed): the isolated member raised its term")
        #expect(simulator.currentLeader?.id == leader)
        simulator.healAll()
        try simulator.runTicks(10 * ClusterSimulator.electionTicks)
        Self.expectUndisturbed(simulator, leader: leader, term: term, ignoring: .none)
        #expect(simulator.node(follower)?.leader == leader, "seed \(seed): the rejoined member does not follow")
    }

    @Test("A member removed while cut off cannot disrupt the group when it comes back", arguments: seeds)
    func removedMemberRejoins(seed: UInt64) throws {
        print("RejoinTests.removedMemberRejoins SEED=\(seed)")
        let simulator = ClusterSimulator(seed: seed, adjust: Self.quiet(size: 5))
        simulator.faultsEnabled = false
        let (leaderID, term) = try Self.settle(simulator)
        let removed = try #require(simulator.nodes.first { $0.id != leaderID }).id
        simulator.isolate(removed)
        let leader = try #require(simulator.node(leaderID))
        try leader.raft?.proposeConfChange(ConfChange(kind: .removeNode, nodeID: removed))
        try simulator.processReadies(leader)
        try simulator.runTicks(5 * ClusterSimulator.electionTicks)
        #expect(!leader.confState.voters.contains(removed), "seed \(seed): the removal was not applied")
        try simulator.runTicks(20 * ClusterSimulator.electionTicks)
        simulator.healAll()
        try simulator.runTicks(20 * ClusterSimulator.electionTicks)
        Self.expectUndisturbed(simulator, leader: leaderID, term: term, ignoring: removed)
    }
}
