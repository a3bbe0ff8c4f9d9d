@testable import EtcdRaft

/// Commands that print state without changing it.
extension InteractionEnvironment {
    /// `raft-state`: every node's role, membership kind, term and leader, one line each.
    func raftState() {
        for id in allNodeIDs {
            let status = member(id).node.status
            let kind: String
            if status.confState.voters.contains(id) {
                kind = "Voter"
            } else if status.confState.learners.contains(id) {
                kind = "Learner"
            } else {
                kind = "Not a member"
            }
            write(
                "\(id): \(status.softState.role.rawValue) (\(kind)) Term:\(status.hardState.term) "
                    + "Lead:\(status.softState.leader)"
            )
        }
    }

    /// `raft-log ID`: the entries node ID has persisted to its storage.
    func raftLog(_ command: InteractionCommand) throws(CommandError) {
        printLog(of: try firstNodeID(command))
    }

    func printLog(of id: NodeID) {
        let storage = member(id).storage
        let first = (try? storage.firstIndex()) ?? 0
        let last = (try? storage.lastIndex()) ?? 0
        guard last >= first, let entries = try? storage.entries(from: first, to: last + 1, maxBytes: Int.max) else {
            write("log is empty: first index=\(first), last index=\(last)")
            return
        }
        for entry in entries { write(InteractionFormat.describe(entry)) }
    }

    /// `status ID`: the node's hard and soft state, log bounds and membership, and on a leader
    /// its view of every member's replication progress.
    func status(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        let node = member(id).node
        let status = node.status
        let hardState = status.hardState
        write(
            "\(id): \(status.softState.role.rawValue) Term:\(hardState.term) Vote:\(hardState.vote) "
                + "Commit:\(hardState.commit) Applied:\(status.applied) Lead:\(status.softState.leader)"
        )
        write("Log: first=\(status.firstIndex) last=\(status.lastIndex)")
        write("Config: \(InteractionFormat.describe(status.confState))")
        if status.leadTransferee != .none { write("LeadTransferee: \(status.leadTransferee)") }
        guard status.softState.role == .leader else { return }
        write("Progress:")
        let tracker = node.raft.tracker
        for memberID in tracker.memberIDs {
            guard let progress = tracker.progress[memberID] else { continue }
            write("  \(memberID): " + InteractionFormat.describe(progress, isSelf: memberID == id))
        }
    }
}
