/// The outcome of an election or of a quorum of acknowledgements.
enum VoteResult: Sendable, Hashable {
    case pending
    case lost
    case won
}

/// The leader's bookkeeping for the whole group: membership, per-member progress and votes.
///
/// Every iteration goes through `memberIDs`, which is sorted, so that message order never
/// depends on hashing (Swift seeds it per process).
struct ProgressTracker {
    private(set) var voters: [NodeID] = []
    private(set) var learners: [NodeID] = []
    /// Voters then learners are merged and sorted here.
    private(set) var memberIDs: [NodeID] = []
    var progress: [NodeID: Progress] = [:]
    private(set) var votes: [NodeID: Bool] = [:]
    let maxInflight: Int

    init(maxInflight: Int) { self.maxInflight = maxInflight }

    var confState: ConfState { ConfState(voters: voters, learners: learners) }

    var quorum: Int { voters.count / 2 + 1 }

    func isVoter(_ id: NodeID) -> Bool { voters.contains(id) }

    /// Installs `confState` as the membership, keeping the progress of members that stay and
    /// creating fresh progress (probing from `nextIndex`) for new ones.
    mutating func apply(_ confState: ConfState, nextIndex: UInt64) {
        voters = confState.voters.sorted()
        learners = confState.learners.sorted().filter { !voters.contains($0) }
        memberIDs = (voters + learners).sorted()
        var updated: [NodeID: Progress] = [:]
        for id in memberIDs {
            let isLearner = !voters.contains(id)
            if var existing = progress[id] {
                existing.isLearner = isLearner
                updated[id] = existing
            } else {
                var fresh = Progress(next: nextIndex, maxInflight: maxInflight, isLearner: isLearner)
                // A new member counts as active, or CheckQuorum could depose the leader before
                // the newcomer ever had a chance to answer.
                fresh.recentActive = true
                updated[id] = fresh
            }
        }
        progress = updated
    }

    /// The largest index stored on a quorum of voters (§5.3 commitment), or `UInt64.max` when
    /// there are no voters (nothing restricts commitment then).
    func committedIndex() -> UInt64 {
        let count = voters.count
        if count == 0 { return UInt64.max }
        if count == 1 { return progress[voters[0]]?.match ?? 0 }
        var matches: [UInt64] = []
        matches.reserveCapacity(count)
        for id in voters { matches.append(progress[id]?.match ?? 0) }
        matches.sort()
        return matches[count - quorum]
    }

    mutating func resetVotes() { votes.removeAll(keepingCapacity: true) }

    /// Records the first answer from `id`; a later, different answer is ignored.
    mutating func recordVote(from id: NodeID, granted: Bool) {
        if votes[id] == nil { votes[id] = granted }
    }

    func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
        var granted = 0
        var rejected = 0
        for id in voters {
            switch votes[id] {
            case true?: granted += 1
            case false?: rejected += 1
            case nil: break
            }
        }
        return (granted, rejected, Self.voteResult(voters: voters.count, granted: granted, rejected: rejected))
    }

    /// The result of a poll in which `granted` voters said yes and `rejected` said no.
    static func voteResult(voters: Int, granted: Int, rejected: Int) -> VoteResult {
        if voters == 0 { return .won }
        let quorum = voters / 2 + 1
        if granted >= quorum { return .won }
        if voters - rejected >= quorum { return .pending }
        return .lost
    }

    /// Whether the voters in `acknowledged` form a quorum.
    func hasQuorum(_ acknowledged: Set<NodeID>) -> Bool {
        var count = 0
        for id in voters where acknowledged.contains(id) { count += 1 }
        return Self.voteResult(voters: voters.count, granted: count, rejected: 0) == .won
    }

    /// CheckQuorum (§6.2): has a quorum of voters been heard from recently? `selfID` is always
    /// counted as active.
    func quorumActive(selfID: NodeID) -> Bool {
        var active = 0
        for id in voters where id == selfID || progress[id]?.recentActive == true { active += 1 }
        return active >= quorum
    }

    var isSingleton: Bool { voters.count == 1 }
}
