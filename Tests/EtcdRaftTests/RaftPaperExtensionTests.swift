@testable import EtcdRaft
import Testing

/// The extensions described in Diego Ongaro's thesis ("Consensus: Bridging Theory and Practice")
/// and etcd-io/raft's engineering additions, one claim per test, each naming its section.
@Suite struct RaftPaperExtensionTests {
    static func preVote(_ configuration: inout RaftConfiguration) { configuration.preVote = true }
    static func checkQuorum(_ configuration: inout RaftConfiguration) { configuration.checkQuorum = true }

    // MARK: - §9.6 PreVote

    @Test("§9.6: a pre-candidate keeps its term, asks with term + 1, and campaigns only after winning the pre-vote")
    func preCandidateKeepsItsTerm() {
        var raft = makeRaft(id: 1, configure: Self.preVote)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.roleAndTerm == "StatePreCandidate@0")
        #expect(raft.vote == .none)
        #expect(
            raft.readMessages() == [2, 3].map { Message(type: .preVote, to: nid($0), from: nid(1), term: 1) }
        )
        // A granted pre-vote carries the future term but must not move ours.
        raft.mustStep(Message(type: .preVoteResponse, to: nid(1), from: nid(2), term: 1))
        #expect(raft.roleAndTerm == "StateCandidate@1")
        #expect(raft.vote == nid(1))
        #expect(raft.readMessages() == [2, 3].map { Message(type: .vote, to: nid($0), from: nid(1), term: 1) })
    }

    @Test("§9.6: a node partitioned away does not raise its term with pre-vote, and does not disrupt the leader on return")
    func partitionedNodeDoesNotDisrupt() {
        var network = RaftNetwork(size: 3, configure: Self.preVote)
        network.campaign(1)
        #expect(network[1].roleAndTerm == "StateLeader@1")
        network.isolate(3)
        network.tick(3, times: 100)
        #expect(network[3].term == 1)
        #expect(network[3].role == .preCandidate)

        network.recover()
        network.tick(1)
        #expect(network[1].roleAndTerm == "StateLeader@1")
        #expect(network[3].roleAndTerm == "StateFollower@1")
        #expect(network[3].leader == nid(1))
    }

    @Test("§9.6 (contrast): without pre-vote, the partitioned node's term runs ahead and its return deposes the leader")
    func withoutPreVoteTheReturningNodeDisrupts() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.isolate(3)
        network.tick(3, times: 100)
        let isolatedTerm = network[3].term
        #expect(isolatedTerm > 1)
        network.recover()
        network.campaign(3)
        #expect(network[1].role != .leader)
        #expect(network[1].term >= isolatedTerm)
    }

    @Test("§9.6: a pre-vote is refused to a node whose log is behind, and nobody's term changes")
    func preVoteRefusedWhenLogIsBehind() {
        var network = RaftNetwork(size: 3, configure: Self.preVote)
        network.campaign(1)
        network.isolate(3)
        network.propose(1)
        network.recover()
        network.clearDelivered()
        network.campaign(3)
        #expect(network[1].roleAndTerm == "StateLeader@1")
        #expect(network[2].roleAndTerm == "StateFollower@1")
        #expect(network[3].roleAndTerm == "StateFollower@1")
        let refusals = network.delivered.filter { $0.type == .preVoteResponse }
        #expect(refusals.map(\.reject) == [true, true])
        #expect(refusals.map(\.term) == [1, 1])
    }

    @Test("§9.6: a pre-vote for a later term is granted even by a node that already voted in its current term")
    func preVoteIgnoresCurrentTermVote() {
        var raft = makeRaft(id: 1, configure: Self.preVote)
        raft.term = 1
        raft.vote = nid(2)
        raft.mustStep(Message(type: .preVote, to: nid(1), from: nid(3), term: 2))
        #expect(raft.readMessages() == [Message(type: .preVoteResponse, to: nid(3), from: nid(1), term: 2)])
        #expect(raft.term == 1)
        #expect(raft.vote == nid(2))
        // A real vote in the same situation is for a new term: it is granted and recorded.
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(3), term: 2))
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(3), from: nid(1), term: 2)])
        #expect(raft.vote == nid(3))
    }

    @Test("§9.6: a pre-candidate that hears from the leader of its term falls back to follower")
    func preCandidateFallsBackOnHeartbeat() {
        var raft = makeRaft(id: 1, configure: Self.preVote)
        raft.becomeFollower(term: 1, leader: .none)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.role == .preCandidate)
        raft.mustStep(Message(type: .heartbeat, to: nid(1), from: nid(2), term: 1))
        #expect(raft.roleAndTerm == "StateFollower@1")
        #expect(raft.leader == nid(2))
    }

    // MARK: - §6.2 CheckQuorum

    @Test("§6.2: a leader that hears from no quorum for an election timeout steps down")
    func leaderStepsDownWithoutQuorum() {
        var network = RaftNetwork(size: 3, configure: Self.checkQuorum)
        network.campaign(1)
        #expect(network[1].role == .leader)
        network.isolate(1)
        // The election answers count for the first check; the second one finds nobody active.
        network.tick(1, times: 19)
        #expect(network[1].role == .leader)
        network.tick(1)
        #expect(network[1].roleAndTerm == "StateFollower@1")
        #expect(network[1].leader == .none)
    }

    @Test("§6.2: a leader that keeps hearing from a quorum stays leader")
    func leaderStaysWithQuorum() {
        var network = RaftNetwork(size: 3, configure: Self.checkQuorum)
        network.campaign(1)
        network.isolate(3)
        network.tick(1, times: 100)
        #expect(network[1].roleAndTerm == "StateLeader@1")
    }

    // MARK: - §4.2.3 Leader stickiness

    @Test("§4.2.3: a follower that heard from its leader within the election timeout ignores vote requests")
    func followerIgnoresVotesWithinLease() {
        var raft = makeRaft(id: 2, configure: Self.checkQuorum)
        raft.becomeFollower(term: 1, leader: nid(1))
        raft.mustStep(Message(type: .vote, to: nid(2), from: nid(3), term: 2, logTerm: 5, index: 5))
        #expect(raft.readMessages().isEmpty)
        #expect(raft.term == 1)
        #expect(raft.vote == .none)

        // After an election timeout of silence the lease is over.
        raft.electionElapsed = 10
        raft.mustStep(Message(type: .vote, to: nid(2), from: nid(3), term: 2, logTerm: 5, index: 5))
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(3), from: nid(2), term: 2)])
        #expect(raft.roleAndTerm == "StateFollower@2")
        #expect(raft.vote == nid(3))
    }

    @Test("§4.2.3/§3.10: a vote request from a leadership transfer passes the lease")
    func transferVotePassesLease() {
        var raft = makeRaft(id: 2, configure: Self.checkQuorum)
        raft.becomeFollower(term: 1, leader: nid(1))
        raft.mustStep(Message(type: .vote, to: nid(2), from: nid(3), term: 2, context: Raft.transferContext))
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(3), from: nid(2), term: 2)])
        #expect(raft.vote == nid(3))
    }

    // MARK: - §6.4 ReadIndex

    @Test("§6.4: a new leader holds reads until an entry of its term commits, then confirms with a heartbeat round")
    func readIndexWaitsForCurrentTermCommit() {
        var raft = makeRaft(id: 1)
        raft.becomeCandidate()
        raft.becomeLeader()
        raft.broadcastAppend()
        _ = raft.readMessages()
        raft.mustStep(Message(type: .readIndex, context: Array("ctx".utf8)))
        #expect(raft.readMessages().isEmpty)
        #expect(raft.readStates.isEmpty)
        #expect(raft.pendingReadIndexRequests.count == 1)

        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 1))
        #expect(raft.log.committed == 1)
        #expect(raft.pendingReadIndexRequests.isEmpty)
        let heartbeats = raft.readMessages().filter { $0.type == .heartbeat }
        #expect(
            heartbeats == [
                Message(type: .heartbeat, to: nid(2), from: nid(1), term: 1, commit: 1, context: Array("ctx".utf8)),
                Message(type: .heartbeat, to: nid(3), from: nid(1), term: 1, commit: 0, context: Array("ctx".utf8)),
            ]
        )
        #expect(raft.readStates.isEmpty)
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(3), term: 1, context: Array("ctx".utf8)))
        #expect(raft.readStates == [ReadState(index: 1, requestContext: Array("ctx".utf8))])
    }

    @Test("§6.4: reads that arrive together are confirmed by a single heartbeat round")
    func manyReadsOneRound() {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        for context in ["a", "b", "c"] { raft.mustStep(Message(type: .readIndex, context: Array(context.utf8))) }
        let sent = raft.readMessages()
        #expect(sent == [2, 3].map { Message(type: .heartbeat, to: nid($0), from: nid(1), term: 1, commit: 1, context: Array("c".utf8)) })
        // An unknown context, or none, confirms nothing.
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1, context: Array("z".utf8)))
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1))
        #expect(raft.readStates.isEmpty)
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1, context: Array("c".utf8)))
        #expect(raft.readStates == ["a", "b", "c"].map { ReadState(index: 1, requestContext: Array($0.utf8)) })
        raft.readStates = []
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(3), term: 1, context: Array("c".utf8)))
        #expect(raft.readStates.isEmpty)
        #expect(raft.readOnly.count == 0)
    }

    @Test("§6.4: a leader cut off from the quorum answers no read")
    func isolatedLeaderAnswersNoRead() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.isolate(1)
        network.send([Message(type: .readIndex, to: nid(1), context: Array("ctx".utf8))])
        network.tick(1, times: 5)
        #expect(network[1].readStates.isEmpty)
        #expect(network[1].readOnly.count == 1)
    }

    @Test("§6.4: a follower's read is forwarded to the leader and answered with the leader's commit index")
    func followerReadIsForwarded() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.propose(1)
        network.send([Message(type: .readIndex, to: nid(2), context: Array("ctx".utf8))])
        #expect(network[2].readStates == [ReadState(index: 2, requestContext: Array("ctx".utf8))])
        #expect(network[1].readStates.isEmpty)
        let forwarded = network.delivered.filter { $0.type == .readIndex && $0.to == nid(1) }
        #expect(forwarded.map(\.from) == [nid(2)])
    }

    @Test("§6.4: a single-voter leader answers reads at once")
    func singleVoterReadsAtOnce() {
        var raft = makeRaft(id: 1, voters: [1])
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.role == .leader)
        raft.mustStep(Message(type: .readIndex, context: [7]))
        #expect(raft.readStates == [ReadState(index: 1, requestContext: [7])])
        #expect(raft.readMessages().isEmpty)
    }

    @Test("§6.4.1: with lease-based reads the leader answers without a heartbeat round")
    func leaseBasedRead() {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage) {
            $0.checkQuorum = true
            $0.readOnlyOption = .leaseBased
        }
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        // A quorum answers one heartbeat round, which gives the leader its lease.
        raft.tick()
        let heartbeats = raft.readMessages().filter { $0.type == .heartbeat }
        #expect(heartbeats.map(\.to) == [nid(2), nid(3)])
        for heartbeat in heartbeats {
            raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: heartbeat.to, term: 1, index: heartbeat.index))
        }
        _ = raft.readMessages()
        raft.mustStep(Message(type: .readIndex, context: [1]))
        #expect(raft.readStates == [ReadState(index: 1, requestContext: [1])])
        raft.mustStep(Message(type: .readIndex, from: nid(2), context: [2]))
        #expect(raft.readMessages() == [Message(type: .readIndexResponse, to: nid(2), from: nid(1), term: 1, index: 1, context: [2])])
    }

    // MARK: - §3.10 Leadership transfer

    @Test("§3.10: the leader hands over to an up-to-date follower with timeout-now, skipping pre-vote and the lease")
    func transferToUpToDateFollower() {
        var network = RaftNetwork(size: 3) {
            $0.preVote = true
            $0.checkQuorum = true
        }
        network.campaign(1)
        network.clearDelivered()
        network.send([Message(type: .transferLeader, to: nid(1), from: nid(2))])
        #expect(network[2].roleAndTerm == "StateLeader@2")
        #expect(network[1].roleAndTerm == "StateFollower@2")
        #expect(network[3].leader == nid(2))
        #expect(network.delivered.contains { $0.type == .timeoutNow && $0.to == nid(2) })
        #expect(!network.delivered.contains { $0.type == .preVote })
    }

    @Test("§3.10: a lagging transferee is first caught up, then told to campaign")
    func transferToLaggingFollower() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.isolate(3)
        for _ in 0..<3 { network.propose(1) }
        network.recover()
        network.clearDelivered()
        network.send([Message(type: .transferLeader, to: nid(1), from: nid(3))])
        #expect(network[3].roleAndTerm == "StateLeader@2")
        #expect(network[3].allEntriesForTest.map(\.term) == [1, 1, 1, 1, 2])
        let toThree = network.delivered.filter { $0.to == nid(3) && ($0.type == .append || $0.type == .timeoutNow) }
        #expect(toThree.first?.type == .append)
        #expect(toThree.filter { $0.type == .timeoutNow }.count == 1)
    }

    @Test("§3.10: a transfer requested on a follower is forwarded and still names the transferee")
    func transferRequestedOnFollower() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        // RaftNode.transferLeadership(to: 3) called on node 2.
        network.send([Message(type: .transferLeader, to: nid(2), from: nid(3))])
        #expect(network[3].roleAndTerm == "StateLeader@2")
        #expect(network[2].role == .follower)
    }

    @Test("§3.10: proposals are dropped during a transfer, and a transfer not done within an election timeout is abandoned")
    func transferAbortsAfterElectionTimeout() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.isolate(3)
        // The request is local to the leader (RaftNode.transferLeadership), not sent by node 3.
        network[1].mustStep(Message(type: .transferLeader, from: nid(3)))
        network.flush(1)
        #expect(network[1].leadTransferee == nid(3))
        var leader = network[1]
        do {
            let error = stepError(&leader, Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [1])]))
            #expect(error == .proposalDropped)
        }
        network.tick(1, times: 9)
        #expect(network[1].leadTransferee == nid(3))
        network.tick(1)
        #expect(network[1].leadTransferee == .none)
        #expect(network[1].roleAndTerm == "StateLeader@1")
        leader = network[1]
        do {
            let error = stepError(&leader, Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [1])]))
            #expect(error == nil)
        }
    }

    @Test("§3.10: transfers to the leader itself or to a learner are ignored; a repeat is ignored; a new target replaces the old")
    func transferTargets() {
        var raft = makeRaft(id: 1, voters: [1, 2, 3], learners: [4])
        raft.becomeCandidate()
        raft.becomeLeader()
        _ = raft.readMessages()
        raft.mustStep(Message(type: .transferLeader, from: nid(1)))
        #expect(raft.leadTransferee == .none)
        raft.mustStep(Message(type: .transferLeader, from: nid(4)))
        #expect(raft.leadTransferee == .none)
        #expect(raft.readMessages().isEmpty)

        raft.mustStep(Message(type: .transferLeader, from: nid(2)))
        #expect(raft.leadTransferee == nid(2))
        // Node 2 is behind, so it gets an append rather than timeout-now.
        #expect(raft.readMessages().map(\.type) == [.append])
        raft.mustStep(Message(type: .transferLeader, from: nid(2)))
        #expect(raft.readMessages().isEmpty)
        raft.mustStep(Message(type: .transferLeader, from: nid(3)))
        #expect(raft.leadTransferee == nid(3))
        #expect(raft.readMessages().map(\.type) == [.append])
    }

    // MARK: - §4.1 Single-server membership changes

    static func confChangeEntry(_ change: ConfChange) -> Entry {
        Entry(term: 0, index: 0, type: .confChange, data: change.encoded())
    }

    @Test("§4.1: the leader accepts one configuration change at a time; a second one becomes an empty entry")
    func oneChangeAtATime() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let first = ConfChange(kind: .addNode, nodeID: nid(4))
        let second = ConfChange(kind: .addNode, nodeID: nid(5))
        try raft.step(Message(type: .propose, from: nid(1), entries: [Self.confChangeEntry(first)]))
        try raft.step(Message(type: .propose, from: nid(1), entries: [Self.confChangeEntry(second)]))
        #expect(raft.pendingConfIndex == 2)
        #expect(
            raft.log.unstableEntries == [
                Entry(term: 1, index: 2, type: .confChange, data: first.encoded()),
                Entry(term: 1, index: 3, type: .normal, data: []),
            ]
        )
        // Once the first change is applied, the next is accepted.
        for message in raft.readMessages() where message.type == .append {
            raft.mustStep(Message(type: .appendResponse, to: nid(1), from: message.to, term: 1, index: 3))
        }
        #expect(raft.log.committed == 3)
        raft.log.applied(to: 3)
        _ = raft.applyConfChange(first)
        try raft.step(Message(type: .propose, from: nid(1), entries: [Self.confChangeEntry(second)]))
        #expect(raft.pendingConfIndex == 4)
        #expect(raft.log.unstableEntries.last == Entry(term: 1, index: 4, type: .confChange, data: second.encoded()))
    }

    @Test("§4.1: a change takes effect when applied, not when appended or committed")
    func changeTakesEffectOnApply() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let change = ConfChange(kind: .addNode, nodeID: nid(4))
        try raft.step(Message(type: .propose, from: nid(1), entries: [Self.confChangeEntry(change)]))
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 2))
        #expect(raft.log.committed == 2)
        #expect(raft.tracker.voters == [nid(1), nid(2), nid(3)])
        #expect(raft.tracker.progress[nid(4)] == nil)

        let confState = raft.applyConfChange(change)
        #expect(confState == ConfState(voters: [nid(1), nid(2), nid(3), nid(4)]))
        #expect(raft.tracker.quorum == 3)
        #expect(raft.tracker.progress[nid(4)]?.next == 3)
        #expect(raft.tracker.progress[nid(4)]?.match == 0)
        // The new member hears from the leader with the next heartbeat.
        _ = raft.readMessages()
        raft.tick()
        #expect(raft.readMessages().filter { $0.type == .heartbeat }.map(\.to) == [nid(2), nid(3), nid(4)])
    }

    @Test("§4.1: learners receive the log but are not asked for votes, never campaign, and do not count towards commit")
    func learnersDoNotVoteOrCount() {
        var candidate = makeRaft(id: 1, voters: [1, 2], learners: [3])
        candidate.mustStep(Message(type: .hup, from: nid(1)))
        #expect(candidate.readMessages().map(\.to) == [nid(2)])
        #expect(candidate.tracker.quorum == 2)

        var learner = makeRaft(id: 3, voters: [1, 2], learners: [3])
        for _ in 0..<100 { learner.tick() }
        #expect(learner.roleAndTerm == "StateFollower@0")
        #expect(learner.readMessages().isEmpty)

        candidate.mustStep(Message(type: .voteResponse, to: nid(1), from: nid(2), term: 1))
        #expect(candidate.role == .leader)
        _ = candidate.readMessages()
        candidate.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(3), term: 1, index: 1))
        #expect(candidate.log.committed == 0)
        candidate.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 1))
        #expect(candidate.log.committed == 1)
    }

    @Test("§4.1: promoting a learner makes it a voter and keeps its replication progress")
    func promoteLearner() {
        var raft = makeRaft(id: 1, voters: [1, 2], learners: [3])
        raft.mustStep(Message(type: .hup, from: nid(1)))
        raft.mustStep(Message(type: .voteResponse, to: nid(1), from: nid(2), term: 1))
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(3), term: 1, index: 1))
        #expect(raft.tracker.progress[nid(3)]?.isLearner == true)
        let confState = raft.applyConfChange(ConfChange(kind: .addNode, nodeID: nid(3)))
        #expect(confState == ConfState(voters: [nid(1), nid(2), nid(3)]))
        #expect(raft.tracker.progress[nid(3)]?.isLearner == false)
        #expect(raft.tracker.progress[nid(3)]?.match == 1)
        // 1 and 3 now form a majority of three.
        #expect(raft.log.committed == 1)
    }

    @Test("§4.1: removing a voter shrinks the quorum, which can commit waiting entries")
    func removingVoterCommits() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3, 4])
        var raft = makeRaft(id: 1, voters: [1, 2, 3, 4], storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [1])]))
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 2))
        #expect(raft.log.committed == 1)
        _ = raft.applyConfChange(ConfChange(kind: .removeNode, nodeID: nid(4)))
        #expect(raft.log.committed == 2)
        #expect(raft.tracker.progress[nid(4)] == nil)
    }

    @Test("§4.2.2: a leader that removes itself steps down")
    func removedLeaderStepsDown() {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        _ = raft.applyConfChange(ConfChange(kind: .removeNode, nodeID: nid(1)))
        #expect(raft.roleAndTerm == "StateFollower@1")
        #expect(!raft.isPromotable)
        do {
            let error = stepError(&raft, Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [1])]))
            #expect(error == .proposalDropped)
        }
    }

    @Test("§4.1: a node does not campaign while a committed configuration change is unapplied")
    func noCampaignWithUnappliedChange() {
        var raft = makeRaft(id: 1)
        raft.becomeFollower(term: 1, leader: nid(2))
        let change = Entry(term: 1, index: 1, type: .confChange, data: ConfChange(kind: .addNode, nodeID: nid(4)).encoded())
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 1, entries: [change], commit: 1))
        _ = raft.readMessages()
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.roleAndTerm == "StateFollower@1")
        raft.log.applied(to: 1)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.roleAndTerm == "StateCandidate@2")
    }

    // MARK: - §5.1 InstallSnapshot (thesis §5.3)

    /// A leader whose log was compacted through index 11 (term 11), for voters 1...3.
    static func compactedStorage() throws -> MemoryStorage {
        let memberStorage = makeStorage(voters: [1, 2, 3], terms: Array(1...11), hardState: HardState(term: 11, commit: 11))
        try memberStorage.createSnapshot(at: 11, confState: ConfState(voters: [nid(1), nid(2), nid(3)]), data: Array("state".utf8))
        try memberStorage.compact(upTo: 11)
        return memberStorage
    }

    @Test("§5.1 InstallSnapshot: the leader sends its snapshot to a follower that needs compacted entries; the follower restores it")
    func leaderSendsSnapshot() throws {
        let leader = makeRaft(id: 1, storage: try Self.compactedStorage(), configure: { $0.applied = 11 })
        let follower = makeRaft(id: 2)
        var network = RaftNetwork([leader, follower])
        network.campaign(1)
        #expect(network[1].roleAndTerm == "StateLeader@12")

        let snapshots = network.delivered.filter { $0.type == .snapshot }
        #expect(snapshots.count == 1)
        #expect(snapshots.first?.snapshot?.metadata == SnapshotMetadata(index: 11, term: 11, confState: ConfState(voters: [nid(1), nid(2), nid(3)])))
        #expect(snapshots.first?.snapshot?.data == Array("state".utf8))

        let restored = network[2]
        #expect(restored.log.unstable.snapshot?.metadata.index == 11)
        #expect(restored.log.firstIndex == 12)
        #expect(restored.log.lastIndex == 12)
        #expect(restored.log.committed == 12)
        #expect(restored.allEntriesForTest == [Entry(term: 12, index: 12)])
        #expect(network[1].tracker.progress[nid(2)]?.state == .replicate)
        #expect(network[1].tracker.progress[nid(2)]?.match == 12)
    }

    @Test("§5.1 InstallSnapshot: a member added after the latest snapshot is sent it all the same (etcd-io/raft); as it stands the member refuses it")
    func snapshotPredatingMember() throws {
        var raft = makeRaft(id: 1, storage: try Self.compactedStorage(), configure: { $0.applied = 11 })
        raft.becomeCandidate()
        raft.becomeLeader()
        _ = raft.applyConfChange(ConfChange(kind: .addNode, nodeID: nid(4)))
        // As after the new member's first rejection: it has nothing, so it needs index 1 on.
        raft.tracker.progress[nid(4)]?.next = 1
        raft.tracker.progress[nid(4)]?.recentActive = true
        _ = raft.readMessages()
        raft.sendAppend(to: nid(4))
        let sent = raft.readMessages()
        #expect(sent.map(\.type) == [.snapshot])
        #expect(sent.first?.snapshot?.metadata.confState == ConfState(voters: [nid(1), nid(2), nid(3)]))
        #expect(raft.tracker.progress[nid(4)]?.state == .snapshot)
        // The application is expected to describe what it sends (etcd's merged snapshot message);
        // a snapshot that does not list its receiver is refused there.
        var newcomer = makeRaft(id: 4)
        newcomer.becomeFollower(term: raft.term, leader: nid(1))
        if let message = sent.first { newcomer.mustStep(message) }
        #expect(newcomer.log.unstable.snapshot == nil)
    }

    @Test("§5.1 InstallSnapshot: the leader waits for the snapshot report, then probes after it", arguments: [SnapshotStatus.finished, .failed])
    func snapshotStatusReports(status: SnapshotStatus) throws {
        var raft = makeRaft(id: 1, storage: try Self.compactedStorage(), configure: { $0.applied = 11 })
        raft.becomeCandidate()
        raft.becomeLeader()
        raft.tracker.progress[nid(2)]?.match = 3
        raft.tracker.progress[nid(2)]?.next = 4
        raft.tracker.progress[nid(2)]?.recentActive = true
        raft.sendAppend(to: nid(2))
        #expect(raft.readMessages().map(\.type) == [.snapshot])
        #expect(raft.tracker.progress[nid(2)]?.state == .snapshot)
        #expect(raft.tracker.progress[nid(2)]?.pendingSnapshot == 11)
        // Paused while the snapshot is in flight.
        raft.sendAppend(to: nid(2))
        #expect(raft.readMessages().isEmpty)

        raft.mustStep(Message(type: .snapshotStatus, from: nid(2), reject: status == .failed))
        let progress = try #require(raft.tracker.progress[nid(2)])
        #expect(progress.state == .probe)
        #expect(progress.next == (status == .finished ? 12 : 4))
        #expect(progress.isPaused)
    }

    @Test("§5.1 InstallSnapshot: a follower ignores a snapshot it has already committed past, and fast-forwards on a matching one")
    func followerSkipsUselessSnapshots() {
        var raft = makeRaft(id: 2, storage: makeStorage(voters: [1, 2, 3], terms: [1, 1, 1], hardState: HardState(term: 1, commit: 2)))
        raft.becomeFollower(term: 1, leader: nid(1))
        let old = Snapshot(metadata: SnapshotMetadata(index: 2, term: 1, confState: ConfState(voters: [nid(1), nid(2), nid(3)])))
        raft.mustStep(Message(type: .snapshot, to: nid(2), from: nid(1), term: 1, snapshot: old))
        #expect(raft.readMessages() == [Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 2)])
        #expect(raft.log.unstable.snapshot == nil)

        let matching = Snapshot(metadata: SnapshotMetadata(index: 3, term: 1, confState: ConfState(voters: [nid(1), nid(2), nid(3)])))
        raft.mustStep(Message(type: .snapshot, to: nid(2), from: nid(1), term: 1, snapshot: matching))
        #expect(raft.readMessages() == [Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 3)])
        #expect(raft.log.unstable.snapshot == nil)
        #expect(raft.log.committed == 3)
        #expect(raft.allEntriesForTest.count == 3)
    }

    // MARK: - Restart (§3.8: persistent state)

    @Test("§3.8: a node restarted from storage recovers term, vote, commit, log and membership, without re-applying")
    func restartFromStorage() throws {
        var members = RaftSmokeTests.makeGroup(size: 3)
        members[nid(1)]?.node.campaign()
        RaftSmokeTests.stabilize(&members)
        for data in 0..<3 { try members[nid(1)]?.node.propose([UInt8(data)]) }
        RaftSmokeTests.stabilize(&members)
        for _ in 0..<2 { members[nid(1)]?.node.tick() }
        RaftSmokeTests.stabilize(&members)

        let before = try #require(members[nid(2)])
        let status = before.node.status
        #expect(status.hardState == HardState(term: 1, vote: nid(1), commit: 4))
        #expect(status.applied == 4)

        var configuration = RaftConfiguration(id: nid(2))
        configuration.applied = status.applied
        var restarted = RaftNode(configuration: configuration, storage: before.storage, random: SplitMix64(seed: 9))
        #expect(restarted.status.hardState == status.hardState)
        #expect(restarted.status.softState == SoftState(leader: .none, role: .follower))
        #expect(restarted.status.confState == ConfState(voters: [nid(1), nid(2), nid(3)]))
        #expect(restarted.allEntries == before.node.allEntries)
        let hasReady = restarted.hasReady()
        #expect(!hasReady)

        // Without the applied index the committed entries are handed out again, from the start.
        var replaying = RaftNode(configuration: RaftConfiguration(id: nid(2)), storage: before.storage, random: SplitMix64(seed: 9))
        let ready = replaying.ready()
        #expect(ready.committedEntries.map(\.index) == [1, 2, 3, 4])
        #expect(ready.hardState == nil)
        #expect(ready.entries.isEmpty)
    }

    @Test("§3.8: a node restarted from a snapshot starts its log after it")
    func restartFromSnapshot() throws {
        let memberStorage = MemoryStorage()
        try memberStorage.applySnapshot(
            Snapshot(metadata: SnapshotMetadata(index: 5, term: 2, confState: ConfState(voters: [nid(1), nid(2), nid(3)])), data: [9])
        )
        memberStorage.append([Entry(term: 2, index: 6, data: [6]), Entry(term: 3, index: 7, data: [7])])
        memberStorage.setHardState(HardState(term: 3, vote: nid(3), commit: 6))
        var node = RaftNode(configuration: RaftConfiguration(id: nid(1)), storage: memberStorage, random: SplitMix64(seed: 1))
        let status = node.status
        #expect(status.firstIndex == 6)
        #expect(status.lastIndex == 7)
        #expect(status.applied == 5)
        #expect(status.hardState == HardState(term: 3, vote: nid(3), commit: 6))
        let ready = node.ready()
        #expect(ready.committedEntries == [Entry(term: 2, index: 6, data: [6])])
        #expect(ready.snapshot == nil)
    }

    // MARK: - Fast backtracking (§5.3, end; etcd's term hints)

    struct BacktrackCase: Sendable, CustomTestStringConvertible {
        var leader: [UInt64]
        var follower: [UInt64]
        var probes: [UInt64]
        var hints: [UInt64]
        var hintTerms: [UInt64]
        var testDescription: String { "leader \(leader), follower \(follower)" }
    }

    @Test(
        "§5.3: rejections carry a hint index and term, so the leader skips at least a whole term per round trip",
        arguments: [
            // Interleaved terms: one round trip per term.
            BacktrackCase(leader: [1, 2, 4, 6], follower: [1, 3, 5, 7], probes: [4, 3, 2, 1], hints: [3, 2, 1], hintTerms: [5, 3, 1]),
            // Long runs: ten mismatching entries cost two round trips.
            BacktrackCase(
                leader: [1, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4], follower: [1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
                probes: [11, 6, 1], hints: [11, 1], hintTerms: [3, 1]
            ),
            // figure 7 (f).
            BacktrackCase(
                leader: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6], follower: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
                probes: [10, 3], hints: [10], hintTerms: [3]
            ),
            // A follower that is merely short needs no term search.
            BacktrackCase(leader: [1, 1, 2, 2, 2], follower: [1, 1], probes: [5, 2], hints: [2], hintTerms: [1]),
        ]
    )
    func fastBacktracking(_ testCase: BacktrackCase) {
        let leader = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: testCase.leader, hardState: HardState(term: 8)))
        let follower = makeRaft(id: 2, storage: makeStorage(voters: [1, 2, 3], terms: testCase.follower, hardState: HardState(term: 8)))
        var network = RaftNetwork([leader, follower])
        network.campaign(1)
        network.send([Message(type: .voteResponse, to: nid(1), from: nid(3), term: 9)])
        #expect(network[1].role == .leader)

        let appends = network.delivered.filter { $0.type == .append && $0.to == nid(2) }
        let rejections = network.delivered.filter { $0.type == .appendResponse && $0.reject }
        #expect(Array(appends.prefix(testCase.probes.count)).map(\.index) == testCase.probes)
        #expect(rejections.map(\.rejectHint) == testCase.hints)
        #expect(rejections.map(\.logTerm) == testCase.hintTerms)
        #expect(network[2].allEntriesForTest == network[1].allEntriesForTest)
    }

    // MARK: - Flow control (etcd-io/raft Progress states)

    static func proposal(_ data: [UInt8]) -> Message {
        Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: data)])
    }

    @Test("flow control: a follower in probe state gets one append at a time, resumed by its next answer")
    func probeStateSendsOneAppend() throws {
        var raft = makeRaft(id: 1)
        raft.becomeCandidate()
        raft.becomeLeader()
        raft.broadcastAppend()
        #expect(raft.readMessages().map(\.to) == [nid(2), nid(3)])
        for data in 1...3 { try raft.step(Self.proposal([UInt8(data)])) }
        #expect(raft.readMessages().isEmpty)
        #expect(raft.tracker.progress[nid(2)]?.isPaused == true)

        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1))
        let sent = raft.readMessages()
        #expect(sent.count == 1)
        #expect(sent.first?.to == nid(2))
        #expect(sent.first?.index == 0)
        #expect(sent.first?.entries.map(\.index) == [1, 2, 3, 4])
    }

    @Test("flow control: in replicate state at most maxInflightMessages appends are outstanding")
    func replicateStateRespectsInflightWindow() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage) { $0.maxInflightMessages = 3 }
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        #expect(raft.tracker.progress[nid(2)]?.state == .replicate)
        for data in 1...5 { try raft.step(Self.proposal([UInt8(data)])) }
        let toTwo = raft.readMessages().filter { $0.to == nid(2) }
        #expect(toTwo.map { $0.entries.map(\.index) } == [[2], [3], [4]])
        #expect(raft.tracker.progress[nid(2)]?.inflights.count == 3)
        #expect(raft.tracker.progress[nid(2)]?.isPaused == true)

        // Acknowledging the first frees one slot: the rest goes out in one message.
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 2))
        let resumed = raft.readMessages().filter { $0.to == nid(2) }
        #expect(resumed.map { $0.entries.map(\.index) } == [[5, 6]])
        #expect(raft.tracker.progress[nid(2)]?.inflights.count == 3)

        // A heartbeat answer frees a slot of a full window, in case acknowledgements were lost.
        try raft.step(Self.proposal([6]))
        _ = raft.readMessages()
        raft.mustStep(Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1))
        #expect(raft.readMessages().filter { $0.to == nid(2) }.map { $0.entries.map(\.index) } == [[7]])
    }

    @Test("flow control: an append carries at most maxSizePerMessageBytes of entries (but at least one)")
    func appendsRespectMaxMessageSize() throws {
        var raft = makeRaft(id: 1) { $0.maxSizePerMessageBytes = 250 }
        raft.becomeCandidate()
        raft.becomeLeader()
        let payload = [UInt8](repeating: 7, count: 100)
        try raft.step(Message(type: .propose, from: nid(1), entries: Array(repeating: Entry(term: 0, index: 0, data: payload), count: 6)))
        let probes = raft.readMessages().filter { $0.to == nid(2) }
        #expect(probes.map { $0.entries.map(\.index) } == [[1, 2]])
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 1, index: 2))
        let streamed = raft.readMessages().filter { $0.to == nid(2) }
        #expect(streamed.map { $0.entries.map(\.index) } == [[3, 4], [5, 6], [7]])
        for message in probes + streamed {
            #expect(message.entries.reduce(0) { $0 + $1.sizeBytes } <= 250)
        }

        var tiny = makeRaft(id: 1) { $0.maxSizePerMessageBytes = 1 }
        tiny.becomeCandidate()
        tiny.becomeLeader()
        try tiny.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: payload)]))
        #expect(tiny.readMessages().filter { $0.to == nid(2) }.map(\.entries.count) == [1])
    }

    @Test("flow control: an unreachable follower drops back to probing")
    func unreachableFollowerProbes() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        try raft.step(Self.proposal([1]))
        #expect(raft.tracker.progress[nid(2)]?.next == 3)
        raft.mustStep(Message(type: .unreachable, from: nid(2)))
        #expect(raft.tracker.progress[nid(2)]?.state == .probe)
        #expect(raft.tracker.progress[nid(2)]?.next == 2)
    }

    // MARK: - Proposal forwarding

    @Test("a follower forwards proposals to the leader, without a term")
    func followerForwardsProposals() throws {
        var raft = makeRaft(id: 2)
        raft.becomeFollower(term: 1, leader: nid(1))
        try raft.step(Message(type: .propose, from: nid(2), entries: [Entry(term: 0, index: 0, data: [1])]))
        #expect(
            raft.readMessages() == [Message(type: .propose, to: nid(1), from: nid(2), entries: [Entry(term: 0, index: 0, data: [1])])]
        )

        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.propose(2, [42])
        #expect(network[1].allEntriesForTest.last == Entry(term: 1, index: 2, data: [42]))
        #expect(network[3].log.committed == 2)
    }

    @Test("a proposal is dropped when there is no leader, forwarding is disabled, or the node is a candidate")
    func proposalsDropped() {
        let proposal = Message(type: .propose, from: nid(2), entries: [Entry(term: 0, index: 0, data: [1])])
        var leaderless = makeRaft(id: 2)
        do {
            let error = stepError(&leaderless, proposal)
            #expect(error == .proposalDropped)
        }

        var noForwarding = makeRaft(id: 2) { $0.disableProposalForwarding = true }
        noForwarding.becomeFollower(term: 1, leader: nid(1))
        do {
            let error = stepError(&noForwarding, proposal)
            #expect(error == .proposalDropped)
        }
        #expect(noForwarding.readMessages().isEmpty)

        var candidate = makeRaft(id: 2)
        candidate.becomeCandidate()
        do {
            let error = stepError(&candidate, proposal)
            #expect(error == .proposalDropped)
        }
        var preCandidate = makeRaft(id: 2, configure: Self.preVote)
        preCandidate.mustStep(Message(type: .hup, from: nid(2)))
        do {
            let error = stepError(&preCandidate, proposal)
            #expect(error == .proposalDropped)
        }
    }

    // MARK: - Uncommitted tail bound

    @Test("the leader drops proposals once the uncommitted payload would exceed its bound")
    func uncommittedSizeLimit() throws {
        var raft = makeRaft(id: 1) { $0.maxUncommittedEntriesBytes = 1000 }
        raft.becomeCandidate()
        raft.becomeLeader()
        let payload = [UInt8](repeating: 1, count: 100)
        for _ in 0..<10 { try raft.step(Self.proposal(payload)) }
        #expect(raft.uncommittedBytes == 1000)
        do {
            let error = stepError(&raft, Self.proposal(payload))
            #expect(error == .proposalDropped)
        }
        // Empty entries are always accepted.
        try raft.step(Self.proposal([]))
        #expect(raft.log.lastIndex == 12)

        // A single oversized proposal is accepted when nothing is outstanding.
        var fresh = makeRaft(id: 1) { $0.maxUncommittedEntriesBytes = 10 }
        fresh.becomeCandidate()
        fresh.becomeLeader()
        try fresh.step(Self.proposal(payload))
        #expect(fresh.uncommittedBytes == 100)
    }

    @Test("applying committed entries makes room under the uncommitted bound again")
    func uncommittedSizeShrinksOnApply() throws {
        var configuration = RaftConfiguration(id: nid(1))
        configuration.maxUncommittedEntriesBytes = 300
        let memberStorage = MemoryStorage(confState: ConfState(voters: [nid(1)]))
        var node = RaftNode(configuration: configuration, storage: memberStorage, random: SplitMix64(seed: 1))
        node.campaign()
        let payload = [UInt8](repeating: 1, count: 100)
        for _ in 0..<3 { try node.propose(payload) }
        var dropped: RaftError?
        do { try node.propose(payload) } catch { dropped = error }
        #expect(dropped == .proposalDropped)
        let ready = node.ready()
        memberStorage.append(ready.entries)
        #expect(ready.committedEntries.count == 4)
        node.advance(ready)
        try node.propose(payload)
        #expect(node.status.lastIndex == 5)
    }
}
