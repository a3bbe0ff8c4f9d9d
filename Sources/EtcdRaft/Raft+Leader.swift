internal import Logging

extension Raft {
    mutating func stepLeader(_ message: Message) throws(RaftError) {
        switch message.type {
        case .beat:
            broadcastHeartbeat(context: nil)
            return
        case .checkQuorum:
            checkQuorumActive()
            return
        case .propose:
            try handleProposal(message)
            return
        case .readIndex:
            handleReadIndex(message)
            return
        default:
            break
        }

        // Everything else is about one follower's progress.
        guard tracker.progress[message.from] != nil else {
            logger.debug("no progress for sender", metadata: ["raft_id": "\(id)", "from": "\(message.from)"])
            return
        }
        switch message.type {
        case .appendResponse:
            handleAppendResponse(message)
        case .heartbeatResponse:
            handleHeartbeatResponse(message)
        case .snapshotStatus:
            handleSnapshotStatus(message)
        case .unreachable:
            // The transport failed to deliver: stop streaming and probe again.
            if tracker.progress[message.from]?.state == .replicate {
                tracker.progress[message.from]?.becomeProbe()
            }
        case .transferLeader:
            handleTransferLeader(message)
        default:
            break
        }
    }

    /// §6.2: a leader that has not heard from a quorum within an election timeout may have been
    /// partitioned away; it steps down so clients can find the real leader.
    private mutating func checkQuorumActive() {
        if !tracker.quorumActive(selfID: id) {
            logger.warning("stepped down: quorum is not active", metadata: ["raft_id": "\(id)", "term": "\(term)"])
            becomeFollower(term: term, leader: .none)
        }
        for memberID in tracker.memberIDs where memberID != id {
            tracker.progress[memberID]?.recentActive = false
        }
    }

    private mutating func handleProposal(_ message: Message) throws(RaftError) {
        precondition(!message.entries.isEmpty, "raft: \(id) stepped empty proposal")
        guard tracker.progress[id] != nil else {
            // This leader was removed from the configuration; it must not append anything.
            throw .proposalDropped
        }
        guard leadTransferee == .none else {
            logger.debug("proposal dropped during leadership transfer", metadata: ["raft_id": "\(id)"])
            throw .proposalDropped
        }
        var entries = message.entries
        for position in entries.indices where entries[position].type == .confChange {
            if pendingConfIndex > log.applied {
                // §4.1: one change at a time. The entry stays in the log as a no-op so the
                // proposer's indexes still line up, as etcd does.
                logger.info(
                    "refused configuration change: another is pending",
                    metadata: ["raft_id": "\(id)", "pending_index": "\(pendingConfIndex)", "applied": "\(log.applied)"]
                )
                entries[position] = Entry(term: 0, index: 0, type: .normal, data: [])
            } else {
                pendingConfIndex = log.lastIndex + UInt64(position) + 1
            }
        }
        guard appendEntries(entries) else { throw .proposalDropped }
        broadcastAppend()
    }

    /// Appends entries proposed to this leader, stamping term and index. False when the
    /// uncommitted tail would exceed its byte bound.
    mutating func appendEntries(_ proposed: [Entry]) -> Bool {
        var entries = proposed
        let lastIndex = log.lastIndex
        var payloadBytes = 0
        for position in entries.indices {
            entries[position].term = term
            entries[position].index = lastIndex + 1 + UInt64(position)
            payloadBytes += entries[position].data.count
        }
        // An empty-payload batch (the leader's first entry) is always accepted, as in etcd, so
        // that a leader with a full tail can still make progress.
        if uncommittedBytes > 0 && payloadBytes > 0 && uncommittedBytes + payloadBytes > maxUncommittedBytes {
            return false
        }
        uncommittedBytes += payloadBytes
        let newLast = log.append(entries)
        _ = tracker.progress[id]?.maybeUpdate(newLast)
        // A single voter commits by itself.
        _ = maybeCommit()
        return true
    }

    mutating func maybeCommit() -> Bool {
        log.maybeCommit(upTo: tracker.committedIndex(), term: term)
    }

    private mutating func handleAppendResponse(_ message: Message) {
        let from = message.from
        guard var progress = tracker.progress[from] else { return }
        progress.recentActive = true

        if message.reject {
            logger.debug(
                "append rejected",
                metadata: [
                    "raft_id": "\(id)", "from": "\(from)", "index": "\(message.index)", "hint": "\(message.rejectHint)",
                    "hint_term": "\(message.logTerm)",
                ]
            )
            // The follower told us the last index that may match and its term there. Skip every
            // entry of ours with a higher term in one step (fast backtracking).
            var nextProbe = message.rejectHint
            if message.logTerm > 0 {
                nextProbe = log.findConflictByTerm(index: message.rejectHint, term: message.logTerm).index
            }
            if progress.maybeDecrement(rejected: message.index, matchHint: nextProbe) {
                if progress.state == .replicate { progress.becomeProbe() }
                tracker.progress[from] = progress
                sendAppend(to: from)
            } else {
                tracker.progress[from] = progress
            }
            return
        }

        let wasPaused = progress.isPaused
        // An answer equal to the match index still ends probing: the follower agrees up to there
        // (e.g. a new leader probing a follower that already had everything).
        let probeConfirmed = progress.state == .probe && progress.match == message.index
        guard progress.maybeUpdate(message.index) || probeConfirmed else {
            tracker.progress[from] = progress
            return
        }
        switch progress.state {
        case .probe:
            progress.becomeReplicate()
        case .snapshot where progress.match + 1 >= log.firstIndex:
            // The follower caught up (from the snapshot or otherwise): stream from here.
            progress.becomeProbe()
            progress.becomeReplicate()
        case .replicate:
            progress.inflights.freeLE(message.index)
        case .snapshot:
            break
        }
        tracker.progress[from] = progress

        if maybeCommit() {
            releasePendingReadIndexRequests()
            broadcastAppend()
        } else if wasPaused {
            // The follower was paused; now that it acknowledged something, send what we have.
            sendAppend(to: from)
        }
        // Fill the inflight window without empty appends.
        while maybeSendAppend(to: from, sendIfEmpty: false) {}
        if from == leadTransferee, tracker.progress[from]?.match == log.lastIndex {
            logger.info("transferee caught up, sending timeout-now", metadata: ["raft_id": "\(id)", "to": "\(from)"])
            sendTimeoutNow(to: from)
        }
    }

    private mutating func handleHeartbeatResponse(_ message: Message) {
        let from = message.from
        guard var progress = tracker.progress[from] else { return }
        progress.recentActive = true
        progress.probeSent = false
        progress.leaseAcknowledgedTick = max(progress.leaseAcknowledgedTick, message.index)
        // Free one slot so a follower whose acks were lost can make progress.
        if progress.state == .replicate && progress.inflights.isFull { progress.inflights.freeFirstOne() }
        tracker.progress[from] = progress
        if progress.match < log.lastIndex { sendAppend(to: from) }

        // Reads waiting for a heartbeat round: all of them in safe mode, and in lease-based mode
        // those that arrived while the leader held no lease.
        guard !message.context.isEmpty else { return }
        guard let acknowledged = readOnly.acknowledge(from: from, context: message.context),
            tracker.hasQuorum(acknowledged)
        else { return }
        for released in readOnly.advance(through: message.context) {
            respondToReadIndex(released.request, index: released.index)
        }
    }

    private mutating func handleSnapshotStatus(_ message: Message) {
        guard var progress = tracker.progress[message.from], progress.state == .snapshot else { return }
        if message.reject {
            // Sending failed: forget the snapshot and probe again; a new one is sent if needed.
            progress.pendingSnapshot = 0
        }
        progress.becomeProbe()
        // Wait for the follower's next answer (heartbeat or append response) before probing.
        progress.probeSent = true
        tracker.progress[message.from] = progress
    }

    private mutating func handleTransferLeader(_ message: Message) {
        let transferee = message.from
        guard tracker.progress[transferee]?.isLearner == false else {
            logger.debug("ignored transfer to learner", metadata: ["raft_id": "\(id)", "to": "\(transferee)"])
            return
        }
        if leadTransferee != .none {
            if leadTransferee == transferee { return }
            abortLeaderTransfer()
        }
        if transferee == id { return }
        // The transfer must finish within an election timeout (§3.10).
        electionElapsed = 0
        leadTransferee = transferee
        logger.info("transferring leadership", metadata: ["raft_id": "\(id)", "to": "\(transferee)"])
        if tracker.progress[transferee]?.match == log.lastIndex {
            sendTimeoutNow(to: transferee)
        } else {
            sendAppend(to: transferee)
        }
    }

    mutating func abortLeaderTransfer() {
        leadTransferee = .none
    }

    private mutating func sendTimeoutNow(to transferee: NodeID) {
        sentTimeoutNowThisTerm = true
        send(Message(type: .timeoutNow, to: transferee))
    }

    // MARK: - Linearizable reads (§6.4)

    private mutating func handleReadIndex(_ message: Message) {
        if tracker.isSingleton {
            // Nobody else can have been elected: our commit index is current.
            respondToReadIndex(message, index: log.committed)
            return
        }
        // §6.4 step 1: until an entry of this term commits, the commit index may lag behind
        // what a previous leader committed. Hold the read until then.
        guard committedEntryInCurrentTerm else {
            pendingReadIndexRequests.append(message)
            return
        }
        serveReadIndex(message)
    }

    var committedEntryInCurrentTerm: Bool { log.termOrZero(at: log.committed) == term }

    private mutating func serveReadIndex(_ message: Message) {
        if readOnlyOption == .leaseBased && holdsLease {
            respondToReadIndex(message, index: log.committed)
            return
        }
        // Safe mode, or a lease-based read without a valid lease (just elected, lost contact,
        // or a transfer went out): confirm leadership with a heartbeat round. One round confirms
        // every read that arrived before it, so the broadcast is deferred to the end of this
        // batch of inputs (`flushReadIndexRound`).
        readOnly.add(index: log.committed, request: message)
        _ = readOnly.acknowledge(from: id, context: message.context)
        readIndexRoundPending = true
    }

    /// §6.4.1: the leader may answer reads without a heartbeat round while no other leader can
    /// exist. A quorum of voters answered heartbeats sent at leader tick `S` or later; each of
    /// them refuses votes for an election timeout after receiving it (`honoursLease`), so no
    /// new leader can be elected before tick `S + electionTimeout`. Two ticks are kept back for
    /// the tick in flight and clock drift between members. This assumes members' ticks run at
    /// the same rate, as any lease does.
    var holdsLease: Bool {
        guard role == .leader, !sentTimeoutNowThisTerm, electionTimeout > 2 else { return false }
        var acknowledged: [UInt64] = []
        acknowledged.reserveCapacity(tracker.voters.count)
        for voter in tracker.voters {
            acknowledged.append(voter == id ? leaderTicks : tracker.progress[voter]?.leaseAcknowledgedTick ?? 0)
        }
        acknowledged.sort(by: >)
        guard acknowledged.count >= tracker.quorum else { return false }
        let quorumTick = acknowledged[tracker.quorum - 1]
        return quorumTick > 0 && leaderTicks - quorumTick < UInt64(electionTimeout - 2)
    }

    /// Starts one heartbeat round for all safe reads queued since the last round. Called by
    /// `RaftNode` before it hands out a Ready, which batches reads into a single round.
    mutating func flushReadIndexRound() {
        guard readIndexRoundPending else { return }
        readIndexRoundPending = false
        guard role == .leader, let context = readOnly.lastPendingContext else { return }
        broadcastHeartbeat(context: context)
    }

    private mutating func releasePendingReadIndexRequests() {
        guard !pendingReadIndexRequests.isEmpty, committedEntryInCurrentTerm else { return }
        let requests = pendingReadIndexRequests
        pendingReadIndexRequests = []
        for request in requests { serveReadIndex(request) }
    }

    private mutating func respondToReadIndex(_ request: Message, index: UInt64) {
        if request.from == .none || request.from == id {
            readStates.append(ReadState(index: index, requestContext: request.context))
        } else {
            send(Message(type: .readIndexResponse, to: request.from, index: index, context: request.context))
        }
    }
}
