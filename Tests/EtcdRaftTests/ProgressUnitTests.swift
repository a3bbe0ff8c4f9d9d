@testable import EtcdRaft
import Testing

@Suite struct InflightsUnitTests {
    @Test("the window fills to capacity and frees everything acknowledged, in order")
    func fillAndFree() {
        var inflights = Inflights(capacity: 10)
        for index in UInt64(0)..<5 { inflights.add(index) }
        #expect(inflights.count == 5)
        #expect(!inflights.isFull)
        for index in UInt64(5)..<10 { inflights.add(index) }
        #expect(inflights.isFull)
        #expect(Array(inflights.lastIndexes) == Array(0..<10))

        inflights.freeLE(4)
        #expect(Array(inflights.lastIndexes) == [5, 6, 7, 8, 9])
        inflights.freeLE(3)
        #expect(inflights.count == 5)
        inflights.freeLE(8)
        #expect(Array(inflights.lastIndexes) == [9])
        inflights.add(10)
        inflights.add(11)
        inflights.freeFirstOne()
        #expect(Array(inflights.lastIndexes) == [10, 11])
        inflights.freeLE(100)
        #expect(inflights.count == 0)
        inflights.freeFirstOne()
        #expect(inflights.count == 0)
        inflights.add(1)
        inflights.reset()
        #expect(inflights.count == 0)
    }

    @Test("adding to a full window is a broken invariant and traps")
    func addToFullTraps() async {
        await #expect(processExitsWith: .failure) {
            var inflights = Inflights(capacity: 1)
            inflights.add(1)
            inflights.add(2)
        }
    }
}

@Suite struct ProgressUnitTests {
    static func progress(_ state: ProgressState, match: UInt64, next: UInt64, pending: UInt64 = 0) -> Progress {
        var progress = Progress(match: match, next: next, maxInflight: 4, isLearner: false)
        switch state {
        case .probe: break
        case .replicate:
            progress.becomeReplicate()
            progress.next = next
        case .snapshot: progress.becomeSnapshot(pending)
        }
        return progress
    }

    @Test("state transitions set next from match (and from the pending snapshot when leaving snapshot state)")
    func transitions() {
        var progress = Self.progress(.replicate, match: 1, next: 5)
        progress.inflights.add(4)
        progress.becomeProbe()
        #expect(progress.state == .probe)
        #expect(progress.next == 2)
        #expect(progress.inflights.count == 0)

        var fromSnapshot = Self.progress(.snapshot, match: 1, next: 5, pending: 10)
        #expect(fromSnapshot.pendingSnapshot == 10)
        fromSnapshot.becomeProbe()
        #expect(fromSnapshot.next == 11)
        #expect(fromSnapshot.pendingSnapshot == 0)

        var caughtUp = Self.progress(.snapshot, match: 12, next: 13, pending: 10)
        caughtUp.becomeProbe()
        #expect(caughtUp.next == 13)

        var replicating = Self.progress(.probe, match: 7, next: 3)
        replicating.probeSent = true
        replicating.becomeReplicate()
        #expect(replicating.state == .replicate)
        #expect(replicating.next == 8)
        #expect(!replicating.probeSent)
    }

    @Test("maybeUpdate moves match forward only, keeps next above it, and unpauses a probe")
    func maybeUpdate() {
        var progress = Self.progress(.probe, match: 3, next: 5)
        progress.probeSent = true
        #expect(progress.maybeUpdate(2) == false)
        #expect(progress.match == 3)
        #expect(progress.next == 5)
        #expect(progress.probeSent)
        #expect(progress.maybeUpdate(3) == false)
        #expect(progress.maybeUpdate(4) == true)
        #expect(progress.match == 4)
        #expect(progress.next == 5)
        #expect(!progress.probeSent)
        #expect(progress.maybeUpdate(6) == true)
        #expect(progress.next == 7)
        progress.optimisticUpdate(9)
        #expect(progress.next == 10)
    }

    struct DecrementCase: Sendable, CustomTestStringConvertible {
        var state: ProgressState
        var match: UInt64
        var next: UInt64
        var rejected: UInt64
        var hint: UInt64
        var accepted: Bool
        var newNext: UInt64
        var testDescription: String { "\(state) m=\(match) n=\(next) rejected \(rejected) hint \(hint)" }
    }

    @Test(
        "maybeDecrement ignores stale rejections and otherwise backs next off using the hint",
        arguments: [
            // Replicate: a rejection at or below match is stale.
            DecrementCase(state: .replicate, match: 5, next: 10, rejected: 5, hint: 5, accepted: false, newNext: 10),
            DecrementCase(state: .replicate, match: 5, next: 10, rejected: 4, hint: 4, accepted: false, newNext: 10),
            // Replicate: otherwise straight back to match + 1.
            DecrementCase(state: .replicate, match: 5, next: 10, rejected: 9, hint: 9, accepted: true, newNext: 6),
            // Probe: only the answer to the latest probe (at next - 1) counts.
            DecrementCase(state: .probe, match: 0, next: 10, rejected: 5, hint: 5, accepted: false, newNext: 10),
            DecrementCase(state: .probe, match: 0, next: 10, rejected: 9, hint: 9, accepted: true, newNext: 9),
            DecrementCase(state: .probe, match: 0, next: 2, rejected: 1, hint: 1, accepted: true, newNext: 1),
            DecrementCase(state: .probe, match: 0, next: 1, rejected: 0, hint: 0, accepted: true, newNext: 1),
            // Probe: jump to the hint + 1, never below 1.
            DecrementCase(state: .probe, match: 0, next: 10, rejected: 9, hint: 2, accepted: true, newNext: 3),
            DecrementCase(state: .probe, match: 0, next: 10, rejected: 9, hint: 0, accepted: true, newNext: 1),
            // Probe: never below match + 1, whatever the hint says.
            DecrementCase(state: .probe, match: 4, next: 10, rejected: 9, hint: 2, accepted: true, newNext: 5),
        ]
    )
    func maybeDecrement(_ testCase: DecrementCase) {
        var progress = Self.progress(testCase.state, match: testCase.match, next: testCase.next)
        progress.probeSent = testCase.state == .probe
        #expect(progress.maybeDecrement(rejected: testCase.rejected, matchHint: testCase.hint) == testCase.accepted)
        #expect(progress.next == testCase.newNext)
        if testCase.state == .probe { #expect(progress.probeSent == !testCase.accepted) }
    }

    @Test("an append answer equal to match ends probing, as in etcd-io/raft")
    func probeEndsOnAnswerAtMatch() {
        let memberStorage = makeStorage(voters: [1, 2, 3])
        var raft = makeRaft(id: 1, storage: memberStorage)
        raft.becomeLeaderAndCommitNoop(storage: memberStorage)
        let last = raft.log.lastIndex
        raft.tracker.progress[nid(2)]?.becomeProbe()
        #expect(raft.tracker.progress[nid(2)]?.match == last)
        raft.mustStep(Message(type: .appendResponse, to: nid(1), from: nid(2), term: raft.term, index: last))
        #expect(raft.tracker.progress[nid(2)]?.state == .replicate)
    }

    @Test("a probe pauses after one append, replicate when the window is full, snapshot always")
    func isPaused() {
        var probe = Self.progress(.probe, match: 0, next: 1)
        #expect(!probe.isPaused)
        probe.probeSent = true
        #expect(probe.isPaused)

        var replicate = Self.progress(.replicate, match: 0, next: 1)
        for index in UInt64(1)...3 { replicate.inflights.add(index) }
        #expect(!replicate.isPaused)
        replicate.inflights.add(4)
        #expect(replicate.isPaused)

        #expect(Self.progress(.snapshot, match: 0, next: 1, pending: 5).isPaused)
    }
}

@Suite struct ProgressTrackerUnitTests {
    static func tracker(matches: [UInt64], learners: [UInt64: UInt64] = [:]) -> ProgressTracker {
        var tracker = ProgressTracker(maxInflight: 8)
        let voters = (1...UInt64(max(matches.count, 1))).prefix(matches.count).map { NodeID($0) }
        let learnerIDs = learners.keys.sorted().map { NodeID($0) }
        tracker.apply(ConfState(voters: voters, learners: learnerIDs), nextIndex: 1)
        for (position, match) in matches.enumerated() { tracker.progress[voters[position]]?.match = match }
        for (id, match) in learners { tracker.progress[NodeID(id)]?.match = match }
        return tracker
    }

    struct CommitCase: Sendable, CustomTestStringConvertible {
        var matches: [UInt64]
        var committed: UInt64
        var testDescription: String { "\(matches) -> \(committed)" }
    }

    @Test(
        "committedIndex is the largest index stored on a majority of voters, for 1 to 7 voters",
        arguments: [
            CommitCase(matches: [5], committed: 5),
            CommitCase(matches: [5, 3], committed: 3),
            CommitCase(matches: [3, 5], committed: 3),
            CommitCase(matches: [1, 2, 3], committed: 2),
            CommitCase(matches: [3, 1, 2], committed: 2),
            CommitCase(matches: [5, 5, 0], committed: 5),
            CommitCase(matches: [1, 2, 3, 4], committed: 2),
            CommitCase(matches: [4, 4, 4, 0], committed: 4),
            CommitCase(matches: [1, 2, 3, 4, 5], committed: 3),
            CommitCase(matches: [9, 9, 0, 0, 0], committed: 0),
            CommitCase(matches: [6, 5, 4, 3, 2, 1], committed: 3),
            CommitCase(matches: [7, 7, 7, 7, 0, 0], committed: 7),
            CommitCase(matches: [1, 2, 3, 4, 5, 6, 7], committed: 4),
            CommitCase(matches: [7, 7, 7, 1, 1, 1, 1], committed: 1),
            CommitCase(matches: [7, 7, 7, 7, 1, 1, 1], committed: 7),
        ]
    )
    func committedIndex(_ testCase: CommitCase) {
        #expect(Self.tracker(matches: testCase.matches).committedIndex() == testCase.committed)
    }

    @Test("learners do not count towards the committed index; no voters means no restriction")
    func committedIndexIgnoresLearners() {
        #expect(Self.tracker(matches: [5, 1, 1], learners: [4: 5, 5: 5]).committedIndex() == 1)
        #expect(Self.tracker(matches: []).committedIndex() == UInt64.max)
    }

    struct VoteCase: Sendable, CustomTestStringConvertible {
        var voters: Int
        var granted: Int
        var rejected: Int
        var result: VoteResult
        var testDescription: String { "\(voters) voters, +\(granted) -\(rejected)" }
    }

    @Test(
        "voteResult: won with a majority of yes, lost once a majority is impossible, else pending",
        arguments: [
            VoteCase(voters: 0, granted: 0, rejected: 0, result: .won),
            VoteCase(voters: 1, granted: 0, rejected: 0, result: .pending),
            VoteCase(voters: 1, granted: 1, rejected: 0, result: .won),
            VoteCase(voters: 1, granted: 0, rejected: 1, result: .lost),
            VoteCase(voters: 2, granted: 1, rejected: 0, result: .pending),
            VoteCase(voters: 2, granted: 1, rejected: 1, result: .lost),
            VoteCase(voters: 2, granted: 2, rejected: 0, result: .won),
            VoteCase(voters: 3, granted: 2, rejected: 1, result: .won),
            VoteCase(voters: 3, granted: 1, rejected: 1, result: .pending),
            VoteCase(voters: 3, granted: 1, rejected: 2, result: .lost),
            VoteCase(voters: 4, granted: 2, rejected: 1, result: .pending),
            VoteCase(voters: 4, granted: 2, rejected: 2, result: .lost),
            VoteCase(voters: 4, granted: 3, rejected: 1, result: .won),
            VoteCase(voters: 5, granted: 2, rejected: 2, result: .pending),
            VoteCase(voters: 5, granted: 2, rejected: 3, result: .lost),
            VoteCase(voters: 5, granted: 3, rejected: 0, result: .won),
            VoteCase(voters: 7, granted: 3, rejected: 3, result: .pending),
            VoteCase(voters: 7, granted: 4, rejected: 3, result: .won),
            VoteCase(voters: 7, granted: 3, rejected: 4, result: .lost),
        ]
    )
    func voteResult(_ testCase: VoteCase) {
        #expect(ProgressTracker.voteResult(voters: testCase.voters, granted: testCase.granted, rejected: testCase.rejected) == testCase.result)
    }

    @Test("a voter's first answer counts; later answers and non-voters' answers do not")
    func recordVotes() {
        var tracker = Self.tracker(matches: [0, 0, 0])
        tracker.recordVote(from: nid(1), granted: true)
        tracker.recordVote(from: nid(2), granted: false)
        tracker.recordVote(from: nid(2), granted: true)
        tracker.recordVote(from: nid(9), granted: true)
        let tally = tracker.tallyVotes()
        #expect(tally.granted == 1)
        #expect(tally.rejected == 1)
        #expect(tally.result == .pending)
        tracker.recordVote(from: nid(3), granted: true)
        #expect(tracker.tallyVotes().result == .won)
        tracker.resetVotes()
        #expect(tracker.tallyVotes().granted == 0)
    }

    @Test("apply keeps the progress of members that stay, adds fresh active ones, and drops the rest")
    func applyConfiguration() {
        var tracker = Self.tracker(matches: [5, 4, 3])
        tracker.progress[nid(2)]?.recentActive = false
        tracker.apply(ConfState(voters: [nid(1), nid(2), nid(4)], learners: [nid(3), nid(4)]), nextIndex: 9)
        #expect(tracker.voters == [nid(1), nid(2), nid(4)])
        #expect(tracker.learners == [nid(3)])
        #expect(tracker.memberIDs == [nid(1), nid(2), nid(3), nid(4)])
        #expect(tracker.progress[nid(2)]?.match == 4)
        #expect(tracker.progress[nid(2)]?.recentActive == false)
        #expect(tracker.progress[nid(3)]?.isLearner == true)
        #expect(tracker.progress[nid(3)]?.match == 3)
        #expect(tracker.progress[nid(4)]?.next == 9)
        #expect(tracker.progress[nid(4)]?.recentActive == true)
        #expect(tracker.quorum == 2)
        #expect(tracker.confState == ConfState(voters: [nid(1), nid(2), nid(4)], learners: [nid(3)]))
    }

    @Test("quorumActive counts recently active voters and the leader itself; hasQuorum counts voters only")
    func quorumChecks() {
        var tracker = Self.tracker(matches: [0, 0, 0, 0, 0], learners: [6: 0])
        for id in tracker.memberIDs { tracker.progress[id]?.recentActive = false }
        tracker.progress[nid(6)]?.recentActive = true
        tracker.progress[nid(2)]?.recentActive = true
        #expect(!tracker.quorumActive(selfID: nid(1)))
        tracker.progress[nid(3)]?.recentActive = true
        #expect(tracker.quorumActive(selfID: nid(1)))

        #expect(!tracker.hasQuorum([nid(1), nid(2), nid(6)]))
        #expect(tracker.hasQuorum([nid(1), nid(2), nid(5)]))
        #expect(!tracker.isSingleton)
        #expect(Self.tracker(matches: [0]).isSingleton)
    }
}
