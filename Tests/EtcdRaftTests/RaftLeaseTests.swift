@testable import EtcdRaft
import Testing

/// §6.4.1 lease-based reads: the lease is measured from when acknowledged heartbeats were sent,
/// and every way a new leader could appear sooner takes it away.
@Suite struct RaftLeaseTests {
    /// Leader 1 of {1, 2, 3} (election timeout 10) that has committed its no-op.
    static func leaseLeader() -> Raft {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage) {
            $0.checkQuorum = true
            $0.readOnlyOption = .leaseBased
        }
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        return raft
    }

    /// Ticks once and answers the heartbeats from `answering`, echoing their stamp.
    static func heartbeatRound(_ raft: inout Raft, answering: [UInt64]) {
        raft.tick()
        for heartbeat in raft.readMessages() where heartbeat.type == .heartbeat && answering.contains(heartbeat.to.rawValue) {
            raft.mustStep(
                Message(type: .heartbeatResponse, to: nid(1), from: heartbeat.to, term: raft.term, index: heartbeat.index)
            )
        }
        _ = raft.readMessages()
    }

    /// Whether a read is answered at once (lease) rather than by a heartbeat round.
    static func answersFromLease(_ raft: inout Raft, context: UInt8) -> Bool {
        raft.mustStep(Message(type: .readIndex, context: [context]))
        let answered = raft.readStates.contains { $0.requestContext == [context] }
        raft.readStates = []
        let round = raft.readMessages().filter { $0.type == .heartbeat && $0.context == [context] }
        #expect(answered != !round.isEmpty, "a read is answered either from the lease or by a round")
        return answered
    }

    @Test("heartbeats carry the leader's tick and the lease holds election - 2 ticks from the acknowledged send")
    func leaseRunsFromSendTime() {
        var raft = Self.leaseLeader()
        #expect(!Self.answersFromLease(&raft, context: 1), "no heartbeat answered yet this term")
        Self.heartbeatRound(&raft, answering: [2])
        let acknowledgedTick = raft.leaderTicks
        #expect(Self.answersFromLease(&raft, context: 2))
        // Silence: the lease lasts while fewer than 10 - 2 ticks have passed since that send.
        for _ in 0..<7 {
            raft.tick()
            _ = raft.readMessages()
        }
        #expect(raft.leaderTicks - acknowledgedTick == 7)
        #expect(Self.answersFromLease(&raft, context: 3))
        raft.tick()
        _ = raft.readMessages()
        #expect(!Self.answersFromLease(&raft, context: 4), "8 ticks after the send the lease is gone")
    }

    @Test("a late answer to an old heartbeat does not renew the lease")
    func lateAnswerDoesNotRenew() throws {
        var raft = Self.leaseLeader()
        raft.tick()
        let oldHeartbeat = try #require(raft.readMessages().first { $0.type == .heartbeat && $0.to == nid(2) })
        #expect(oldHeartbeat.index == raft.leaderTicks)
        for _ in 0..<9 {
            raft.tick()
            _ = raft.readMessages()
        }
        raft.mustStep(
            Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: raft.term, index: oldHeartbeat.index)
        )
        _ = raft.readMessages()
        #expect(!Self.answersFromLease(&raft, context: 1))
    }

    @Test("§3.10: once a TimeoutNow went out, reads take a heartbeat round for the rest of the term")
    func noLeaseAfterTimeoutNow() {
        var raft = Self.leaseLeader()
        Self.heartbeatRound(&raft, answering: [2, 3])
        #expect(Self.answersFromLease(&raft, context: 1))
        // Follower 2 is up to date, so the transfer sends TimeoutNow at once.
        raft.tracker.progress[nid(2)]?.match = raft.log.lastIndex
        raft.mustStep(Message(type: .transferLeader, from: nid(2)))
        #expect(raft.readMessages().map(\.type) == [.timeoutNow])
        // Even after the transfer is abandoned, the forced campaign may still be on its way.
        raft.abortLeaderTransfer()
        Self.heartbeatRound(&raft, answering: [2, 3])
        #expect(!Self.answersFromLease(&raft, context: 2))
    }

    @Test("a member that just started refuses votes for an election timeout in lease mode, not in safe mode")
    func startedMemberHonoursForgottenLease() {
        let request = Message(type: .vote, to: nid(2), from: nid(3), term: 5, logTerm: 0, index: 0)
        var leaseFollower = makeRaft(id: 2) {
            $0.checkQuorum = true
            $0.readOnlyOption = .leaseBased
        }
        leaseFollower.mustStep(request)
        #expect(leaseFollower.readMessages().isEmpty, "ignored: it may have answered a heartbeat before a crash")
        #expect(leaseFollower.term == 0)
        for _ in 0..<10 { leaseFollower.tick() }
        _ = leaseFollower.readMessages()
        leaseFollower.mustStep(request)
        #expect(leaseFollower.readMessages().map { "\($0.type) reject=\($0.reject)" } == ["voteResponse reject=false"])

        var safeFollower = makeRaft(id: 2) { $0.checkQuorum = true }
        safeFollower.mustStep(request)
        #expect(safeFollower.readMessages().map { "\($0.type) reject=\($0.reject)" } == ["voteResponse reject=false"])
    }
}
