internal import Logging

extension Raft {
    /// Applies a committed configuration change (§4.1: a change takes effect on each member when
    /// that member applies it) and returns the resulting membership.
    mutating func applyConfChange(_ change: ConfChange) -> ConfState {
        var voters = tracker.voters
        var learners = tracker.learners
        let target = change.nodeID
        switch change.kind {
        case .updateNode:
            return tracker.confState
        case .addNode:
            learners.removeAll { $0 == target }
            if !voters.contains(target) { voters.append(target) }
        case .addLearnerNode:
            voters.removeAll { $0 == target }
            if !learners.contains(target) { learners.append(target) }
        case .removeNode:
            voters.removeAll { $0 == target }
            learners.removeAll { $0 == target }
        }
        let confState = ConfState(voters: voters, learners: learners)
        switchToConfiguration(confState)
        return confState
    }

    private mutating func switchToConfiguration(_ confState: ConfState) {
        tracker.apply(confState, nextIndex: log.lastIndex + 1)
        let ownProgress = tracker.progress[id]
        isLearner = ownProgress?.isLearner ?? false
        logger.info(
            "configuration changed",
            metadata: ["raft_id": "\(id)", "voters": "\(confState.voters)", "learners": "\(confState.learners)"]
        )
        guard role == .leader else { return }
        if ownProgress == nil || isLearner {
            // This leader is no longer a voter. It steps down so the remaining voters elect a
            // leader among themselves; it must not keep driving a group it does not belong to.
            logger.info("leader left the voters, stepping down", metadata: ["raft_id": "\(id)"])
            becomeFollower(term: term, leader: .none)
            return
        }
        if confState.voters.isEmpty { return }
        // Fewer voters can mean a smaller quorum and a higher commit index.
        if maybeCommit() {
            broadcastAppend()
        } else {
            for memberID in tracker.memberIDs where memberID != id {
                maybeSendAppend(to: memberID, sendIfEmpty: false)
            }
        }
        if leadTransferee != .none && !tracker.isVoter(leadTransferee) {
            abortLeaderTransfer()
        }
    }
}
