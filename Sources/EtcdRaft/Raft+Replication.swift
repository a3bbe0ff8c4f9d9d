internal import Logging

extension Raft {
    /// Sends every follower and learner what it is missing.
    mutating func broadcastAppend() {
        for memberID in tracker.memberIDs where memberID != id {
            sendAppend(to: memberID)
        }
    }

    mutating func sendAppend(to memberID: NodeID) {
        _ = maybeSendAppend(to: memberID, sendIfEmpty: true)
    }

    /// Sends one append (or a snapshot when the entries are compacted away) to `memberID`, unless
    /// its progress is paused. With `sendIfEmpty` false, nothing is sent when there are no new
    /// entries. Returns whether a message was sent.
    @discardableResult
    mutating func maybeSendAppend(to memberID: NodeID, sendIfEmpty: Bool) -> Bool {
        guard var progress = tracker.progress[memberID], !progress.isPaused else { return false }
        let previousIndex = progress.next - 1
        let previousTerm: UInt64
        let entries: [Entry]
        do {
            previousTerm = try log.term(at: previousIndex)
            entries = try log.entries(from: progress.next, maxBytes: maxMessageBytes)
        } catch {
            return sendSnapshot(to: memberID, progress: &progress)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        if let last = entries.last {
            switch progress.state {
            case .replicate:
                progress.optimisticUpdate(last.index)
                progress.inflights.add(last.index)
            case .probe:
                progress.probeSent = true
            case .snapshot:
                preconditionFailure("raft: \(id) sending append to \(memberID) in snapshot state")
            }
        }
        tracker.progress[memberID] = progress
        send(
            Message(
                type: .append, to: memberID, logTerm: previousTerm, index: previousIndex, entries: entries,
                commit: log.committed
            )
        )
        return true
    }

    /// The follower needs entries we no longer have: send the latest snapshot instead (§5.1
    /// "InstallSnapshot"). Skipped for a follower not recently heard from, whose link may be down.
    private mutating func sendSnapshot(to memberID: NodeID, progress: inout Progress) -> Bool {
        guard progress.recentActive else {
            logger.debug("not sending snapshot to inactive member", metadata: ["raft_id": "\(id)", "to": "\(memberID)"])
            return false
        }
        let snapshot: Snapshot
        do {
            snapshot = try log.snapshot()
        } catch .snapshotTemporarilyUnavailable {
            logger.debug("snapshot temporarily unavailable", metadata: ["raft_id": "\(id)", "to": "\(memberID)"])
            return false
        } catch {
            preconditionFailure("raft: \(id) failed to read snapshot for \(memberID): \(error)")
        }
        precondition(!snapshot.isEmpty, "raft: \(id) needs a snapshot for \(memberID) but storage has none")
        let members = snapshot.metadata.confState.voters + snapshot.metadata.confState.learners
        if !members.contains(memberID) {
            // The member joined after this snapshot was taken and would refuse it as it stands (a
            // snapshot must list its receiver). It is sent all the same, as etcd-io/raft does: the
            // application describes what it really sends at send time (etcd's
            // createMergedSnapshotMessage: its applied index, term and membership, with a backend
            // image made then), which lists the member. Not sending it would leave a member added
            // after a compaction waiting for the next snapshot, --snapshot-count entries away.
            logger.info(
                "latest snapshot predates this member; the application must describe it at send time",
                metadata: ["raft_id": "\(id)", "to": "\(memberID)", "index": "\(snapshot.metadata.index)"]
            )
        }
        progress.becomeSnapshot(snapshot.metadata.index)
        tracker.progress[memberID] = progress
        logger.debug(
            "sending snapshot",
            metadata: ["raft_id": "\(id)", "to": "\(memberID)", "index": "\(snapshot.metadata.index)"]
        )
        send(Message(type: .snapshot, to: memberID, snapshot: snapshot))
        return true
    }

    /// Heartbeats carry a commit index no higher than the follower's match, so a follower never
    /// commits an index beyond its log.
    mutating func sendHeartbeat(to memberID: NodeID, context: [UInt8]?) {
        let match = tracker.progress[memberID]?.match ?? 0
        // With lease-based reads the heartbeat's index carries the leader's tick count, which
        // the answer echoes: the lease is measured from when an acknowledged heartbeat was sent.
        let leaseTick = readOnlyOption == .leaseBased ? leaderTicks : 0
        send(
            Message(
                type: .heartbeat, to: memberID, index: leaseTick, commit: min(match, log.committed),
                context: context ?? []
            )
        )
    }

    mutating func broadcastHeartbeat(context: [UInt8]?) {
        let context = context ?? readOnly.lastPendingContext
        for memberID in tracker.memberIDs where memberID != id {
            sendHeartbeat(to: memberID, context: context)
        }
        if context != nil { readIndexRoundPending = false }
    }
}
