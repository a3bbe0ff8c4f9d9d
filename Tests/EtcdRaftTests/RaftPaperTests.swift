@testable import EtcdRaft
import Testing

/// The claims of the Raft paper ("In Search of an Understandable Consensus Algorithm", §5), one
/// test each, in the order the paper makes them. Nodes run with PreVote and CheckQuorum off so
/// that the plain protocol is what is checked; the extensions are in RaftPaperExtensionTests.
@Suite struct RaftPaperTests {
    // MARK: - §5.1 Raft basics

    @Test(
        "§5.1: a node that sees a higher term adopts it and reverts to follower",
        arguments: [RaftRole.follower, .candidate, .preCandidate, .leader]
    )
    func updatesTermFromMessage(role: RaftRole) {
        var raft = makeRaft(id: 1)
        switch role {
        case .follower: raft.becomeFollower(term: 1, leader: nid(2))
        case .candidate: raft.becomeCandidate()
        case .preCandidate:
            raft.becomeFollower(term: 1, leader: .none)
            raft.becomePreCandidate()
        case .leader:
            raft.becomeCandidate()
            raft.becomeLeader()
        }
        #expect(raft.term == 1)
        #expect(raft.role == role)

        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 2))

        #expect(raft.term == 2)
        #expect(raft.role == .follower)
        #expect(raft.leader == nid(2))
        #expect(raft.vote == .none)
    }

    @Test("§5.1: a message with a stale term is ignored")
    func rejectsStaleTermMessage() {
        var raft = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: [1], hardState: HardState(term: 2)))
        raft.becomeFollower(term: 2, leader: nid(2))
        let before = raft.allEntriesForTest
        raft.mustStep(
            Message(type: .append, to: nid(1), from: nid(3), term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)], commit: 1)
        )
        #expect(raft.term == 2)
        #expect(raft.leader == nid(2))
        #expect(raft.allEntriesForTest == before)
        #expect(raft.log.committed == 0)
        #expect(raft.readMessages().isEmpty)

        // A stale vote request is not answered either: the candidate learns of the newer term
        // from someone else.
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(3), term: 1, logTerm: 5, index: 9))
        #expect(raft.readMessages().isEmpty)
        #expect(raft.vote == .none)
    }

    // MARK: - §5.2 Leader election

    @Test("§5.2: a node starts as a follower of term 0 with no leader and no vote")
    func startsAsFollower() {
        let raft = makeRaft(id: 1)
        #expect(raft.role == .follower)
        #expect(raft.term == 0)
        #expect(raft.leader == .none)
        #expect(raft.vote == .none)
    }

    @Test("§5.2: a leader sends heartbeats to every follower once per heartbeat timeout")
    func leaderBroadcastsHeartbeats() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, heartbeatTicks: 2, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        for data in 0..<5 {
            try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [UInt8(data)])]))
        }
        _ = raft.readMessages()

        let expected = [2, 3].map { to in
            // The commit index on a heartbeat never exceeds what the follower has acknowledged.
            Message(type: .heartbeat, to: nid(to), from: nid(1), term: 1, commit: 1)
        }
        raft.tick()
        #expect(raft.readMessages().isEmpty)
        raft.tick()
        #expect(raft.readMessages() == expected)
        raft.tick()
        #expect(raft.readMessages().isEmpty)
        raft.tick()
        #expect(raft.readMessages() == expected)
    }

    @Test(
        "§5.2: a follower or candidate that hears nothing for an election timeout starts an election",
        arguments: [RaftRole.follower, .candidate]
    )
    func startsElectionAfterTimeout(role: RaftRole) {
        let electionTicks = 10
        var raft = makeRaft(id: 1, electionTicks: electionTicks)
        if role == .follower {
            raft.becomeFollower(term: 1, leader: nid(2))
        } else {
            raft.becomeCandidate()
        }
        // The randomized timeout is below 2 × electionTicks, so this many ticks start exactly
        // one election.
        for _ in 1..<(2 * electionTicks) { raft.tick() }

        #expect(raft.term == 2)
        #expect(raft.role == .candidate)
        #expect(raft.vote == nid(1))
        #expect(raft.tracker.votes == [nid(1): true])
        #expect(
            raft.readMessages() == [2, 3].map {
                Message(type: .vote, to: nid($0), from: nid(1), term: 2, logTerm: 0, index: 0)
            }
        )
    }

    @Test("§5.2: a follower does not campaign before its randomized election timeout")
    func followerWaitsForItsTimeout() {
        var raft = makeRaft(id: 1)
        raft.becomeFollower(term: 1, leader: nid(2))
        let timeout = raft.randomizedElectionTimeout
        for _ in 1..<timeout { raft.tick() }
        #expect(raft.role == .follower)
        #expect(raft.readMessages().isEmpty)
        raft.tick()
        #expect(raft.role == .candidate)
        #expect(raft.term == 2)
    }

    @Test("§5.2: randomized election timeouts are spread over [election, 2 × election)")
    func electionTimeoutsAreRandomized() {
        let electionTicks = 10
        var raft = makeRaft(id: 1, electionTicks: electionTicks, seed: 42)
        var observed: Set<Int> = []
        for round in 0..<200 {
            raft.becomeFollower(term: raft.term, leader: .none)
            var ticks = 0
            while raft.role == .follower {
                raft.tick()
                ticks += 1
                if ticks > 2 * electionTicks { break }
            }
            #expect(raft.role == .candidate, "round \(round)")
            observed.insert(ticks)
        }
        #expect(observed == Set(electionTicks..<(2 * electionTicks)))
    }

    @Test("§5.2: randomized timeouts rarely make several followers time out on the same tick")
    func electionTimeoutsRarelyConflict() {
        // Five followers share the same last tick only when their draws coincide; with a spread
        // of ten values that should happen in well under a third of elections.
        var nodes = (1...5).map { makeRaft(id: UInt64($0), voters: [1, 2, 3, 4, 5], seed: UInt64($0) * 7919) }
        var conflicts = 0
        let rounds = 1000
        for _ in 0..<rounds {
            for position in nodes.indices { nodes[position].becomeFollower(term: nodes[position].term, leader: .none) }
            var timedOut = 0
            while timedOut == 0 {
                for position in nodes.indices {
                    nodes[position].tick()
                    if nodes[position].role == .candidate { timedOut += 1 }
                    _ = nodes[position].readMessages()
                }
            }
            if timedOut > 1 { conflicts += 1 }
        }
        #expect(conflicts > 0)
        #expect(Double(conflicts) / Double(rounds) < 0.3)
    }

    @Test("§5.2: a candidate votes for itself and asks every other voter in one round")
    func candidateVotesForItselfAndAsksEveryone() {
        var raft = makeRaft(
            id: 1, voters: [1, 2, 3, 4, 5], storage: makeStorage(voters: [1, 2, 3, 4, 5], terms: [1, 1, 2], hardState: HardState(term: 2))
        )
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.role == .candidate)
        #expect(raft.term == 3)
        #expect(raft.vote == nid(1))
        #expect(
            raft.readMessages() == [2, 3, 4, 5].map {
                Message(type: .vote, to: nid($0), from: nid(1), term: 3, logTerm: 2, index: 3)
            }
        )
    }

    struct ElectionCase: Sendable, CustomTestStringConvertible {
        var size: Int
        var votes: [UInt64: Bool]
        var expected: RaftRole
        var testDescription: String { "\(size) voters, votes \(votes.sorted { $0.key < $1.key }) -> \(expected)" }
    }

    @Test(
        "§5.2: a candidate wins with a majority, returns to follower when a majority refuses, and otherwise waits",
        arguments: [
            ElectionCase(size: 1, votes: [:], expected: .leader),
            ElectionCase(size: 3, votes: [2: true, 3: true], expected: .leader),
            ElectionCase(size: 3, votes: [2: true], expected: .leader),
            ElectionCase(size: 5, votes: [2: true, 3: true, 4: true, 5: true], expected: .leader),
            ElectionCase(size: 5, votes: [2: true, 3: true, 4: true], expected: .leader),
            ElectionCase(size: 5, votes: [2: true, 3: true], expected: .leader),
            ElectionCase(size: 3, votes: [2: false, 3: false], expected: .follower),
            ElectionCase(size: 5, votes: [2: false, 3: false, 4: false, 5: false], expected: .follower),
            ElectionCase(size: 5, votes: [2: true, 3: false, 4: false, 5: false], expected: .follower),
            ElectionCase(size: 3, votes: [:], expected: .candidate),
            ElectionCase(size: 3, votes: [2: false], expected: .candidate),
            ElectionCase(size: 5, votes: [2: true], expected: .candidate),
            ElectionCase(size: 5, votes: [2: false, 3: false], expected: .candidate),
            ElectionCase(size: 5, votes: [2: true, 3: false, 4: false], expected: .candidate),
            ElectionCase(size: 5, votes: [:], expected: .candidate),
        ]
    )
    func electionInOneRound(_ testCase: ElectionCase) {
        let voters = (1...UInt64(testCase.size)).map { $0 }
        var raft = makeRaft(id: 1, voters: voters)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        for (from, granted) in testCase.votes.sorted(by: { $0.key < $1.key }) {
            raft.mustStep(Message(type: .voteResponse, to: nid(1), from: nid(from), term: raft.term, reject: !granted))
        }
        #expect(raft.role == testCase.expected)
        #expect(raft.term == 1)
    }

    @Test("§5.2: a vote counts once: a repeated grant from the same voter does not make a majority")
    func repeatedVoteCountsOnce() {
        var raft = makeRaft(id: 1, voters: [1, 2, 3, 4, 5])
        raft.mustStep(Message(type: .hup, from: nid(1)))
        for _ in 0..<3 {
            raft.mustStep(Message(type: .voteResponse, to: nid(1), from: nid(2), term: 1))
        }
        #expect(raft.role == .candidate)
        raft.mustStep(Message(type: .voteResponse, to: nid(1), from: nid(3), term: 1))
        #expect(raft.role == .leader)
    }

    struct FollowerVoteCase: Sendable, CustomTestStringConvertible {
        var vote: UInt64
        var candidate: UInt64
        var rejected: Bool
        var testDescription: String { "voted \(vote), asked by \(candidate)" }
    }

    @Test(
        "§5.2: a voter grants at most one vote per term, first come first served",
        arguments: [
            FollowerVoteCase(vote: 0, candidate: 2, rejected: false),
            FollowerVoteCase(vote: 0, candidate: 3, rejected: false),
            FollowerVoteCase(vote: 2, candidate: 2, rejected: false),
            FollowerVoteCase(vote: 3, candidate: 3, rejected: false),
            FollowerVoteCase(vote: 2, candidate: 3, rejected: true),
            FollowerVoteCase(vote: 3, candidate: 2, rejected: true),
        ]
    )
    func followerVotesOncePerTerm(_ testCase: FollowerVoteCase) {
        var raft = makeRaft(id: 1)
        raft.term = 1
        raft.vote = nid(testCase.vote)
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(testCase.candidate), term: 1))
        #expect(
            raft.readMessages() == [
                Message(type: .voteResponse, to: nid(testCase.candidate), from: nid(1), term: 1, reject: testCase.rejected)
            ]
        )
        #expect(raft.vote == (testCase.rejected ? nid(testCase.vote) : nid(testCase.candidate)))
    }

    @Test("§5.2: the first candidate of a term gets the vote, the second is refused")
    func firstComeFirstServed() {
        var raft = makeRaft(id: 1)
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(2), term: 1))
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(3), term: 1))
        #expect(
            raft.readMessages() == [
                Message(type: .voteResponse, to: nid(2), from: nid(1), term: 1),
                Message(type: .voteResponse, to: nid(3), from: nid(1), term: 1, reject: true),
            ]
        )
        #expect(raft.vote == nid(2))
        // A new term frees the vote again.
        raft.mustStep(Message(type: .vote, to: nid(1), from: nid(3), term: 2))
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(3), from: nid(1), term: 2)])
        #expect(raft.vote == nid(3))
    }

    @Test("§5.2: a candidate that receives an append from a leader of its term returns to follower", arguments: [UInt64(1), 2])
    func candidateFallsBackOnAppend(leaderTerm: UInt64) {
        var raft = makeRaft(id: 1)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.role == .candidate)
        _ = raft.readMessages()
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: leaderTerm))
        #expect(raft.role == .follower)
        #expect(raft.term == leaderTerm)
        #expect(raft.leader == nid(2))
        #expect(raft.readMessages() == [Message(type: .appendResponse, to: nid(2), from: nid(1), term: leaderTerm)])
    }

    @Test("§5.2: a candidate ignores an append from a leader of an older term")
    func candidateIgnoresOlderLeader() {
        var raft = makeRaft(id: 1)
        raft.becomeFollower(term: 1, leader: .none)
        raft.mustStep(Message(type: .hup, from: nid(1)))
        #expect(raft.term == 2)
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 1))
        #expect(raft.role == .candidate)
        #expect(raft.term == 2)
    }

    @Test("§5.2 election safety: split votes leave no leader, and a later election elects exactly one")
    func electionSafetyOnSplitVote() {
        var network = RaftNetwork(size: 4)
        // Node 1 and node 2 campaign for term 1 at once; 3 hears from 1 first, 4 from 2 first.
        var first = network[1]
        var second = network[2]
        first.mustStep(Message(type: .hup, from: nid(1)))
        second.mustStep(Message(type: .hup, from: nid(2)))
        network[1] = first
        network[2] = second
        var requests = network[1].messages + network[2].messages
        network[1].messages = []
        network[2].messages = []
        // 3 hears from 1 first and 4 from 2 first; each then refuses the other candidate.
        let order: [(UInt64, UInt64)] = [(1, 3), (2, 4), (1, 2), (1, 4), (2, 1), (2, 3)]
        requests.sort { first, second in
            let firstPosition = order.firstIndex { $0 == (first.from.rawValue, first.to.rawValue) } ?? order.count
            let secondPosition = order.firstIndex { $0 == (second.from.rawValue, second.to.rawValue) } ?? order.count
            return firstPosition < secondPosition
        }
        network.send(requests)

        // Each candidate got two of four votes: short of a quorum of three, and lost.
        #expect(network.peers.values.filter { $0.role == .leader }.isEmpty)
        #expect(network[3].vote == nid(1))
        #expect(network[4].vote == nid(2))
        #expect(network[1].roleAndTerm == "StateFollower@1")
        #expect(network[2].roleAndTerm == "StateFollower@1")

        network.campaign(3)
        let newLeaders = network.peers.values.filter { $0.role == .leader }.map(\.id)
        #expect(newLeaders == [nid(3)])
        #expect(network.peers.values.allSatisfy { $0.term == 2 })
    }

    // MARK: - §5.3 Log replication

    @Test("§5.3: the leader appends a proposal to its log and sends it to every follower")
    func leaderStartsReplication() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let lastIndex = raft.log.lastIndex

        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: Array("some data".utf8))]))

        let entry = Entry(term: 1, index: lastIndex + 1, data: Array("some data".utf8))
        #expect(raft.log.lastIndex == lastIndex + 1)
        #expect(raft.log.committed == lastIndex)
        #expect(raft.log.unstableEntries == [entry])
        #expect(
            raft.readMessages() == [2, 3].map {
                Message(type: .append, to: nid($0), from: nid(1), term: 1, logTerm: 1, index: lastIndex, entries: [entry], commit: lastIndex)
            }
        )
    }

    @Test("§5.3: an entry is committed once the leader has it on a majority, and the new commit index is sent out")
    func leaderCommitsEntry() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let lastIndex = raft.log.lastIndex
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: Array("some data".utf8))]))

        for message in raft.readMessages() {
            raft.mustStep(Message(type: .appendResponse, to: nid(1), from: message.to, term: 1, index: message.index + 1))
        }

        #expect(raft.log.committed == lastIndex + 1)
        #expect(raft.log.nextCommittedEntries() == [Entry(term: 1, index: lastIndex + 1, data: Array("some data".utf8))])
        #expect(
            raft.readMessages() == [2, 3].map {
                Message(type: .append, to: nid($0), from: nid(1), term: 1, logTerm: 1, index: lastIndex + 1, commit: lastIndex + 1)
            }
        )
    }

    struct AcknowledgeCase: Sendable, CustomTestStringConvertible {
        var size: Int
        var acceptors: [UInt64]
        var committed: Bool
        var testDescription: String { "\(size) voters, acked by \(acceptors)" }
    }

    @Test(
        "§5.3: the leader commits when a majority (counting itself) acknowledges",
        arguments: [
            AcknowledgeCase(size: 1, acceptors: [], committed: true),
            AcknowledgeCase(size: 3, acceptors: [], committed: false),
            AcknowledgeCase(size: 3, acceptors: [2], committed: true),
            AcknowledgeCase(size: 3, acceptors: [2, 3], committed: true),
            AcknowledgeCase(size: 4, acceptors: [2], committed: false),
            AcknowledgeCase(size: 4, acceptors: [2, 3], committed: true),
            AcknowledgeCase(size: 5, acceptors: [], committed: false),
            AcknowledgeCase(size: 5, acceptors: [2], committed: false),
            AcknowledgeCase(size: 5, acceptors: [2, 3], committed: true),
            AcknowledgeCase(size: 5, acceptors: [2, 3, 4], committed: true),
            AcknowledgeCase(size: 5, acceptors: [2, 3, 4, 5], committed: true),
        ]
    )
    func leaderAcknowledgesCommit(_ testCase: AcknowledgeCase) throws {
        let voters = (1...UInt64(testCase.size)).map { $0 }
        let memberStorage = makeStorage(voters: voters)
        var raft = makeRaft(id: 1, voters: voters, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let lastIndex = raft.log.lastIndex
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: Array("some data".utf8))]))
        for message in raft.readMessages() where testCase.acceptors.contains(message.to.rawValue) {
            raft.mustStep(Message(type: .appendResponse, to: nid(1), from: message.to, term: 1, index: message.index + 1))
        }
        #expect(raft.log.committed == (testCase.committed ? lastIndex + 1 : lastIndex))
    }

    @Test(
        "§5.3: committing an entry also commits every preceding entry, including those of earlier terms",
        arguments: [[UInt64](), [2], [1, 1], [1, 2]]
    )
    func leaderCommitsPrecedingEntries(terms: [UInt64]) throws {
        let memberStorage = makeStorage(voters: [1, 2, 3], terms: terms, hardState: HardState(term: 2))
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeCandidate()
        raft.becomeLeader()
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: Array("some data".utf8))]))
        for message in raft.readMessages() {
            raft.mustStep(
                Message(type: .appendResponse, to: nid(1), from: message.to, term: 3, index: message.index + UInt64(message.entries.count))
            )
        }
        let last = UInt64(terms.count)
        let expected =
            entries(terms: terms) + [Entry(term: 3, index: last + 1), Entry(term: 3, index: last + 2, data: Array("some data".utf8))]
        #expect(raft.log.committed == last + 2)
        #expect(raft.log.nextCommittedEntries() == expected)
    }

    struct FollowerCommitCase: Sendable, CustomTestStringConvertible {
        var entries: [Entry]
        var commit: UInt64
        var testDescription: String { "\(entries.count) entries, commit \(commit)" }
    }

    @Test(
        "§5.3: a follower learns the commit index from the leader and applies up to it",
        arguments: [
            FollowerCommitCase(entries: [Entry(term: 1, index: 1, data: Array("a".utf8))], commit: 1),
            FollowerCommitCase(entries: [Entry(term: 1, index: 1, data: Array("a".utf8)), Entry(term: 1, index: 2, data: Array("b".utf8))], commit: 2),
            FollowerCommitCase(entries: [Entry(term: 1, index: 1, data: Array("b".utf8)), Entry(term: 1, index: 2, data: Array("a".utf8))], commit: 2),
            FollowerCommitCase(entries: [Entry(term: 1, index: 1, data: Array("a".utf8)), Entry(term: 1, index: 2, data: Array("b".utf8))], commit: 1),
        ]
    )
    func followerCommitsEntries(_ testCase: FollowerCommitCase) {
        var raft = makeRaft(id: 1)
        raft.becomeFollower(term: 1, leader: nid(2))
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 1, entries: testCase.entries, commit: testCase.commit))
        #expect(raft.log.committed == testCase.commit)
        #expect(raft.log.nextCommittedEntries() == Array(testCase.entries[..<Int(testCase.commit)]))
    }

    @Test("§5.3: a follower learns a new commit index from a heartbeat, but never beyond its own log")
    func followerCommitsFromHeartbeat() {
        var raft = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: [1, 1, 1]))
        raft.becomeFollower(term: 1, leader: nid(2))
        raft.mustStep(Message(type: .heartbeat, to: nid(1), from: nid(2), term: 1, commit: 2))
        #expect(raft.log.committed == 2)
        #expect(raft.readMessages() == [Message(type: .heartbeatResponse, to: nid(2), from: nid(1), term: 1)])
        // The leader never sends a heartbeat commit above the follower's match index.
        raft.mustStep(Message(type: .heartbeat, to: nid(1), from: nid(2), term: 1, commit: 1))
        #expect(raft.log.committed == 2)
    }

    struct CheckAppendCase: Sendable, CustomTestStringConvertible {
        var logTerm: UInt64
        var index: UInt64
        var response: UInt64
        var rejected: Bool
        var hintIndex: UInt64
        var hintTerm: UInt64
        var testDescription: String { "append after (\(index), term \(logTerm))" }
    }

    @Test(
        "§5.3 log matching: a follower rejects an append whose previous entry does not match",
        arguments: [
            // Matches committed entries: the answer is the commit index.
            CheckAppendCase(logTerm: 0, index: 0, response: 1, rejected: false, hintIndex: 0, hintTerm: 0),
            CheckAppendCase(logTerm: 1, index: 1, response: 1, rejected: false, hintIndex: 0, hintTerm: 0),
            // Matches an uncommitted entry.
            CheckAppendCase(logTerm: 2, index: 2, response: 2, rejected: false, hintIndex: 0, hintTerm: 0),
            // Mismatching term at an existing index.
            CheckAppendCase(logTerm: 1, index: 2, response: 2, rejected: true, hintIndex: 1, hintTerm: 1),
            // An index beyond our log.
            CheckAppendCase(logTerm: 3, index: 3, response: 3, rejected: true, hintIndex: 2, hintTerm: 2),
        ]
    )
    func followerChecksPreviousEntry(_ testCase: CheckAppendCase) {
        var raft = makeRaft(
            id: 1, storage: makeStorage(voters: [1, 2, 3], terms: [1, 2], hardState: HardState(term: 0, vote: .none, commit: 1))
        )
        raft.becomeFollower(term: 2, leader: nid(2))
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 2, logTerm: testCase.logTerm, index: testCase.index))
        #expect(
            raft.readMessages() == [
                Message(
                    type: .appendResponse, to: nid(2), from: nid(1), term: 2, logTerm: testCase.hintTerm, index: testCase.response,
                    reject: testCase.rejected, rejectHint: testCase.hintIndex
                )
            ]
        )
    }

    struct FollowerAppendCase: Sendable, CustomTestStringConvertible {
        var index: UInt64
        var logTerm: UInt64
        var entries: [Entry]
        var log: [Entry]
        var unstable: [Entry]
        var testDescription: String { "append \(entries.map(\.term)) after \(index)" }
    }

    @Test(
        "§5.3 log matching: a follower appends new entries and deletes the conflicting suffix",
        arguments: [
            FollowerAppendCase(
                index: 2, logTerm: 2, entries: [Entry(term: 3, index: 3)],
                log: entries(terms: [1, 2, 3]), unstable: [Entry(term: 3, index: 3)]
            ),
            FollowerAppendCase(
                index: 1, logTerm: 1, entries: [Entry(term: 3, index: 2), Entry(term: 4, index: 3)],
                log: entries(terms: [1, 3, 4]), unstable: [Entry(term: 3, index: 2), Entry(term: 4, index: 3)]
            ),
            FollowerAppendCase(index: 0, logTerm: 0, entries: [Entry(term: 1, index: 1)], log: entries(terms: [1, 2]), unstable: []),
            FollowerAppendCase(
                index: 0, logTerm: 0, entries: [Entry(term: 3, index: 1)], log: [Entry(term: 3, index: 1)],
                unstable: [Entry(term: 3, index: 1)]
            ),
        ]
    )
    func followerAppendsEntries(_ testCase: FollowerAppendCase) {
        var raft = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: [1, 2]))
        raft.becomeFollower(term: 2, leader: nid(2))
        raft.mustStep(
            Message(type: .append, to: nid(1), from: nid(2), term: 2, logTerm: testCase.logTerm, index: testCase.index, entries: testCase.entries)
        )
        #expect(raft.allEntriesForTest == testCase.log)
        #expect(raft.log.unstableEntries == testCase.unstable)
    }

    @Test("§5.3: the leader never overwrites or deletes entries in its own log")
    func leaderIsAppendOnly() throws {
        let memberStorage = makeStorage(voters: [1, 2, 3], terms: [1, 1, 2], hardState: HardState(term: 2))
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeCandidate()
        raft.becomeLeader()
        var previous = raft.allEntriesForTest
        func checkPrefix(_ raft: Raft, sourceLocation: SourceLocation = #_sourceLocation) {
            let now = raft.allEntriesForTest
            #expect(now.count >= previous.count, sourceLocation: sourceLocation)
            #expect(Array(now.prefix(previous.count)) == previous, sourceLocation: sourceLocation)
            previous = now
        }
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [1])]))
        checkPrefix(raft)
        // A follower whose log conflicts rejects; the leader backs off but keeps its log.
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 3, logTerm: 1, index: 3, reject: true, rejectHint: 2))
        checkPrefix(raft)
        // An append from a deposed leader of an older term changes nothing.
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(3), term: 2, logTerm: 1, index: 1, entries: [Entry(term: 2, index: 2)], commit: 2))
        checkPrefix(raft)
        try raft.step(Message(type: .propose, from: nid(1), entries: [Entry(term: 0, index: 0, data: [2])]))
        checkPrefix(raft)
        #expect(raft.allEntriesForTest.map(\.term) == [1, 1, 2, 3, 3, 3])
        #expect(raft.role == .leader)
    }

    /// The leader's log of figure 7, and the six followers (a)-(f) it may find at term 8.
    static let figure7Leader: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    static let figure7Followers: [[UInt64]] = [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],  // (a) missing an entry
        [1, 1, 1, 4],  // (b) missing many entries
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  // (c) an extra uncommitted entry
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  // (d) extra entries of a later term
        [1, 1, 1, 4, 4, 4, 4],  // (e) missing entries and extra ones of term 4
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  // (f) leader of terms 2 and 3 that never committed
    ]

    @Test("§5.3 figure 7: the leader brings each divergent follower's log in line with its own", arguments: 0..<6)
    func leaderSyncsFollowerLog(follower: Int) {
        let term: UInt64 = 8
        let leader = makeRaft(
            id: 1, storage: makeStorage(voters: [1, 2, 3], terms: Self.figure7Leader, hardState: HardState(term: term - 1, commit: 3))
        )
        let followerNode = makeRaft(
            id: 2, storage: makeStorage(voters: [1, 2, 3], terms: Self.figure7Followers[follower], hardState: HardState(term: term - 1))
        )
        // Node 3 never answers; its vote is delivered by hand because node 2's log may be more
        // up-to-date than the leader's, and then 2 refuses.
        var network = RaftNetwork([leader, followerNode])
        network.campaign(1)
        network.send([Message(type: .voteResponse, to: nid(1), from: nid(3), term: term)])
        #expect(network[1].role == .leader)
        network.propose(1, [])

        let leaderLog = network[1].allEntriesForTest
        #expect(leaderLog.map(\.term) == Self.figure7Leader + [8, 8])
        #expect(network[2].allEntriesForTest == leaderLog)
        #expect(network[1].log.committed == 12)
        #expect(network[2].log.committed == 12)
    }

    // MARK: - §5.4.1 Election restriction

    @Test("§5.4.1: a candidate's vote request carries its last log index and term", arguments: [[UInt64(1)], [1, 2]])
    func voteRequestCarriesLastEntry(terms: [UInt64]) {
        let term = terms.last.map { $0 + 1 } ?? 1
        var raft = makeRaft(id: 1)
        raft.mustStep(
            Message(type: .append, to: nid(1), from: nid(2), term: term - 1, logTerm: 0, index: 0, entries: entries(terms: terms))
        )
        _ = raft.readMessages()
        for _ in 1..<(2 * 10) { raft.tick() }
        #expect(
            raft.readMessages() == [2, 3].map {
                Message(type: .vote, to: nid($0), from: nid(1), term: term, logTerm: terms.last ?? 0, index: UInt64(terms.count))
            }
        )
    }

    struct UpToDateCase: Sendable, CustomTestStringConvertible {
        var terms: [UInt64]
        var candidateLastTerm: UInt64
        var candidateLastIndex: UInt64
        var rejected: Bool
        var testDescription: String { "voter log \(terms), candidate (\(candidateLastIndex), term \(candidateLastTerm))" }
    }

    @Test(
        "§5.4.1: a voter refuses a candidate whose log is less up-to-date than its own",
        arguments: [
            // Same last term: the longer log wins.
            UpToDateCase(terms: [1], candidateLastTerm: 1, candidateLastIndex: 1, rejected: false),
            UpToDateCase(terms: [1], candidateLastTerm: 1, candidateLastIndex: 2, rejected: false),
            UpToDateCase(terms: [1, 1], candidateLastTerm: 1, candidateLastIndex: 1, rejected: true),
            // The candidate's last term is higher: it wins regardless of length.
            UpToDateCase(terms: [1], candidateLastTerm: 2, candidateLastIndex: 1, rejected: false),
            UpToDateCase(terms: [1], candidateLastTerm: 2, candidateLastIndex: 2, rejected: false),
            UpToDateCase(terms: [1, 1], candidateLastTerm: 2, candidateLastIndex: 1, rejected: false),
            // The voter's last term is higher: it refuses regardless of length.
            UpToDateCase(terms: [2], candidateLastTerm: 1, candidateLastIndex: 1, rejected: true),
            UpToDateCase(terms: [2], candidateLastTerm: 1, candidateLastIndex: 2, rejected: true),
            UpToDateCase(terms: [1, 2], candidateLastTerm: 1, candidateLastIndex: 5, rejected: true),
        ]
    )
    func voterChecksUpToDate(_ testCase: UpToDateCase) {
        var raft = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: testCase.terms))
        raft.mustStep(
            Message(type: .vote, to: nid(1), from: nid(2), term: 3, logTerm: testCase.candidateLastTerm, index: testCase.candidateLastIndex)
        )
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(2), from: nid(1), term: 3, reject: testCase.rejected)])
        #expect(raft.vote == (testCase.rejected ? .none : nid(2)))
        #expect(raft.term == 3)
    }

    @Test("§5.4.1/§5.4.3 leader completeness: a node missing a committed entry cannot become leader")
    func nodeMissingCommittedEntryCannotWin() {
        var network = RaftNetwork(size: 3)
        network.campaign(1)
        network.isolate(3)
        network.propose(1, Array("committed".utf8))
        network.tick(1, times: 1)
        #expect(network[1].log.committed == 2)
        #expect(network[2].log.committed == 2)
        #expect(network[3].log.lastIndex == 1)

        network.recover()
        network.campaign(3)
        #expect(network[3].role != .leader)
        #expect(network[1].vote != nid(3))
        #expect(network[2].vote != nid(3))

        network.campaign(2)
        #expect(network[2].role == .leader)
        // The new leader's log holds the committed entry, and it reaches node 3.
        network.propose(2, Array("next".utf8))
        for id: UInt64 in [1, 2, 3] {
            #expect(network[id].allEntriesForTest.contains { $0.data == Array("committed".utf8) && $0.index == 2 }, "node \(id)")
        }
    }

    // MARK: - §5.4.2 Committing entries from previous terms

    struct CurrentTermCommitCase: Sendable, CustomTestStringConvertible {
        var acknowledged: UInt64
        var committed: UInt64
        var testDescription: String { "acknowledged \(acknowledged)" }
    }

    @Test(
        "§5.4.2: a leader commits by counting replicas only for an entry of its own term",
        arguments: [
            CurrentTermCommitCase(acknowledged: 1, committed: 0),
            CurrentTermCommitCase(acknowledged: 2, committed: 0),
            CurrentTermCommitCase(acknowledged: 3, committed: 3),
        ]
    )
    func leaderCommitsOnlyCurrentTermByCounting(_ testCase: CurrentTermCommitCase) {
        var raft = makeRaft(id: 1, storage: makeStorage(voters: [1, 2, 3], terms: [1, 2], hardState: HardState(term: 2)))
        raft.becomeCandidate()
        raft.becomeLeader()
        _ = raft.readMessages()
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: raft.term, index: testCase.acknowledged))
        #expect(raft.log.committed == testCase.committed)
    }

    @Test("§5.4.2 figure 8 (c)-(e): an old-term entry stored on a majority commits only with an entry of the leader's term")
    func figure8CommitRule() {
        // S1 led term 2 and wrote index 2; now it leads term 4 and has index 3 of term 4.
        var raft = makeRaft(
            id: 1, voters: [1, 2, 3, 4, 5],
            storage: makeStorage(voters: [1, 2, 3, 4, 5], terms: [1, 2], hardState: HardState(term: 3))
        )
        raft.becomeCandidate()
        raft.becomeLeader()
        _ = raft.readMessages()
        #expect(raft.term == 4)
        #expect(raft.allEntriesForTest.map(\.term) == [1, 2, 4])
        // (c): S2 and S3 store index 2, so S1, S2 and S3 (a majority) hold it. Still not committed.
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 4, index: 2))
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(3), term: 4, index: 2))
        #expect(raft.tracker.progress[nid(2)]?.match == 2)
        #expect(raft.tracker.progress[nid(3)]?.match == 2)
        #expect(raft.log.committed == 0)
        // (e): once index 3 (term 4) is on a majority, it and everything before it commit.
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: 4, index: 3))
        #expect(raft.log.committed == 0)
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(3), term: 4, index: 3))
        #expect(raft.log.committed == 3)
    }

    @Test("§5.4.2 figure 8 (d): why: an old-term entry on a majority can still be overwritten by a newer leader")
    func figure8OverwriteOfOldTermEntry() {
        // S3 stores S1's term-2 entry at index 2. S5 wrote index 2 at term 3 and campaigns at
        // term 5; its last term 3 beats S3's 2, so S3 votes for it and then loses its entry.
        var raft = makeRaft(
            id: 3, voters: [1, 2, 3, 4, 5],
            storage: makeStorage(voters: [1, 2, 3, 4, 5], terms: [1, 2], hardState: HardState(term: 4))
        )
        raft.mustStep(Message(type: .vote, to: nid(3), from: nid(5), term: 5, logTerm: 3, index: 2))
        #expect(raft.readMessages() == [Message(type: .voteResponse, to: nid(5), from: nid(3), term: 5)])
        raft.mustStep(
            Message(type: .append, to: nid(3), from: nid(5), term: 5, logTerm: 1, index: 1, entries: [Entry(term: 3, index: 2), Entry(term: 5, index: 3)])
        )
        #expect(raft.allEntriesForTest.map(\.term) == [1, 3, 5])
    }

    // MARK: - §5.5 Follower and candidate crashes

    @Test("§5.5: appends are idempotent: a duplicate or an older, shorter append changes nothing")
    func appendIsIdempotent() {
        var raft = makeRaft(id: 1)
        raft.becomeFollower(term: 1, leader: nid(2))
        let long = Message(type: .append, to: nid(1), from: nid(2), term: 1, entries: entries(terms: [1, 1, 1]))
        let short = Message(type: .append, to: nid(1), from: nid(2), term: 1, entries: entries(terms: [1, 1]))
        raft.mustStep(long)
        raft.mustStep(long)
        raft.mustStep(short)
        #expect(raft.allEntriesForTest == entries(terms: [1, 1, 1]))
        #expect(raft.log.unstableEntries == entries(terms: [1, 1, 1]))
        #expect(raft.readMessages().map(\.index) == [3, 3, 2])
        // Once index 2 is committed, a replay of an append below it is answered with the commit
        // index and leaves the log alone.
        raft.mustStep(Message(type: .heartbeat, to: nid(1), from: nid(2), term: 1, commit: 2))
        _ = raft.readMessages()
        raft.mustStep(Message(type: .append, to: nid(1), from: nid(2), term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)]))
        #expect(raft.readMessages() == [Message(type: .appendResponse, to: nid(2), from: nid(1), term: 1, index: 2)])
        #expect(raft.allEntriesForTest == entries(terms: [1, 1, 1]))
    }
}

extension Raft {
    /// Every entry from the first index on, stable and unstable.
    var allEntriesForTest: [Entry] { log.allEntries() }
}
