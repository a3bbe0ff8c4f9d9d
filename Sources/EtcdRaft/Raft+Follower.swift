internal import Logging

extension Raft {
    mutating func stepCandidate(_ message: Message) throws(RaftError) {
        // Only answers to our own kind of poll count: a late vote answer must not be taken for a
        // pre-vote answer or the other way round.
        let expectedResponse: MessageType = role == .preCandidate ? .preVoteResponse : .voteResponse
        switch message.type {
        case .propose:
            throw .proposalDropped
        case .append, .heartbeat, .snapshot:
            // A leader exists for our term (§5.2: a candidate that hears from one steps down).
            becomeFollower(term: message.term, leader: message.from)
            handleLeaderMessage(message)
        case expectedResponse:
            let result = poll(from: message.from, type: message.type, granted: !message.reject)
            switch result {
            case .won:
                if role == .preCandidate {
                    campaign(kind: .election)
                } else {
                    becomeLeader()
                    broadcastAppend()
                }
            case .lost:
                // Pre-vote answers may carry a future term; stay in ours.
                becomeFollower(term: term, leader: .none)
            case .pending:
                break
            }
        case .timeoutNow:
            logger.debug("ignored timeout-now as candidate", metadata: ["raft_id": "\(id)"])
        default:
            break
        }
    }

    mutating func stepFollower(_ message: Message) throws(RaftError) {
        switch message.type {
        case .propose:
            guard leader != .none else { throw .proposalDropped }
            guard !disableProposalForwarding else { throw .proposalDropped }
            var forwarded = message
            forwarded.to = leader
            send(forwarded)
        case .append, .heartbeat, .snapshot:
            // Word from the leader of our term: it is alive, so our election timer restarts.
            electionElapsed = 0
            leader = message.from
            handleLeaderMessage(message)
        case .transferLeader:
            guard leader != .none else { return }
            var forwarded = message
            forwarded.to = leader
            send(forwarded)
        case .timeoutNow:
            // The leader chose us (§3.10): campaign now, skipping pre-vote and stickiness.
            logger.info("received timeout-now, campaigning", metadata: ["raft_id": "\(id)", "term": "\(term)"])
            hup(transfer: true)
        case .readIndex:
            guard leader != .none else { throw .proposalDropped }
            var forwarded = message
            forwarded.to = leader
            send(forwarded)
        case .readIndexResponse:
            readStates.append(ReadState(index: message.index, requestContext: message.context))
        default:
            break
        }
    }

    /// Appends, heartbeats and snapshots, which only a leader sends.
    mutating func handleLeaderMessage(_ message: Message) {
        switch message.type {
        case .append: handleAppend(message)
        case .heartbeat: handleHeartbeat(message)
        case .snapshot: handleSnapshot(message)
        default: preconditionFailure("raft: \(message.type) is not a leader message")
        }
    }

    /// §5.3: accept the leader's entries if our log matches at the preceding index.
    mutating func handleAppend(_ message: Message) {
        if message.index < log.committed {
            // Entries up to our commit index are settled; tell the leader where we stand.
            send(Message(type: .appendResponse, to: message.from, index: log.committed))
            return
        }
        if let lastNewIndex = log.maybeAppend(
            index: message.index, logTerm: message.logTerm, committed: message.commit, entries: message.entries
        ) {
            send(Message(type: .appendResponse, to: message.from, index: lastNewIndex))
            return
        }
        // Tell the leader the last index that might match and our term there, so it can skip a
        // whole term of mismatching entries at once.
        let hintIndex = min(message.index, log.lastIndex)
        let hint = log.findConflictByTerm(index: hintIndex, term: message.logTerm)
        send(
            Message(
                type: .appendResponse, to: message.from, logTerm: hint.term, index: message.index, reject: true,
                rejectHint: hint.index
            )
        )
    }

    mutating func handleHeartbeat(_ message: Message) {
        log.commit(to: message.commit)
        send(Message(type: .heartbeatResponse, to: message.from, index: message.index, context: message.context))
    }

    mutating func handleSnapshot(_ message: Message) {
        guard let snapshot = message.snapshot else { return }
        if restore(snapshot) {
            send(Message(type: .appendResponse, to: message.from, index: log.lastIndex))
        } else {
            send(Message(type: .appendResponse, to: message.from, index: log.committed))
        }
    }

    /// Replaces our log with a snapshot from the leader; false when the snapshot brings nothing
    /// new (it is at or below our commit index, or our log already has its last entry).
    mutating func restore(_ snapshot: Snapshot) -> Bool {
        let metadata = snapshot.metadata
        if metadata.index <= log.committed { return false }
        if role != .follower {
            // Only a leader of a newer term can send a snapshot; stepping down is the safe answer
            // if that somehow did not happen.
            logger.warning("non-follower received snapshot", metadata: ["raft_id": "\(id)", "term": "\(term)"])
            becomeFollower(term: term + 1, leader: .none)
            return false
        }
        let members = metadata.confState.voters + metadata.confState.learners
        guard members.contains(id) else {
            logger.warning("snapshot does not include this node, ignoring", metadata: ["raft_id": "\(id)"])
            return false
        }
        if log.matchTerm(metadata.index, metadata.term) {
            // Our log already has the snapshot's last entry: just commit up to it.
            log.commit(to: metadata.index)
            return false
        }
        log.restore(snapshot)
        tracker = ProgressTracker(maxInflight: tracker.maxInflight)
        tracker.apply(metadata.confState, nextIndex: log.lastIndex + 1)
        tracker.progress[id]?.match = metadata.index
        isLearner = tracker.progress[id]?.isLearner ?? false
        logger.info(
            "restored snapshot",
            metadata: ["raft_id": "\(id)", "index": "\(metadata.index)", "snapshot_term": "\(metadata.term)"]
        )
        return true
    }
}
