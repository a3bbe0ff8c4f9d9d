@testable import EtcdRaft

/// How interaction scripts print Raft values. The layout follows etcd-io/raft's `Describe*`
/// helpers (`1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal ""]`) so that a reader
/// who knows those scripts can read these.
enum InteractionFormat {
    static let messageTypeNames: [MessageType: String] = [
        .hup: "MsgHup", .beat: "MsgBeat", .propose: "MsgProp", .append: "MsgApp", .appendResponse: "MsgAppResp",
        .vote: "MsgVote", .voteResponse: "MsgVoteResp", .snapshot: "MsgSnap", .heartbeat: "MsgHeartbeat",
        .heartbeatResponse: "MsgHeartbeatResp", .unreachable: "MsgUnreachable", .snapshotStatus: "MsgSnapStatus",
        .checkQuorum: "MsgCheckQuorum", .transferLeader: "MsgTransferLeader", .timeoutNow: "MsgTimeoutNow",
        .readIndex: "MsgReadIndex", .readIndexResponse: "MsgReadIndexResp", .preVote: "MsgPreVote",
        .preVoteResponse: "MsgPreVoteResp",
    ]

    static func name(_ type: MessageType) -> String { messageTypeNames[type] ?? "Msg(\(type.rawValue))" }

    static func messageType(named name: String) -> MessageType? {
        MessageType.allCases.first { messageTypeNames[$0] == name }
    }

    /// `1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[...]`. For a rejected append, `Log` is the
    /// follower's term at the hint and the rejected index.
    static func describe(_ message: Message) -> String {
        var text = "\(message.from)->\(message.to) \(name(message.type)) Term:\(message.term)"
        text += " Log:\(message.logTerm)/\(message.index)"
        if message.reject { text += " Rejected (Hint: \(message.rejectHint))" }
        if message.commit != 0 { text += " Commit:\(message.commit)" }
        if !message.entries.isEmpty {
            text += " Entries:[" + message.entries.map(describe).joined(separator: ", ") + "]"
        }
        if let snapshot = message.snapshot { text += " Snapshot: " + describe(snapshot) }
        if !message.context.isEmpty { text += " Context:" + quoted(message.context) }
        return text
    }

    /// `1/3 EntryNormal "data"` or `1/4 EntryConfChange v4`.
    static func describe(_ entry: Entry) -> String {
        switch entry.type {
        case .normal:
            return "\(entry.term)/\(entry.index) EntryNormal \(quoted(entry.data))"
        case .confChange:
            let change = ConfChange(encoded: entry.data).map(\.shorthand) ?? "<undecodable>"
            return "\(entry.term)/\(entry.index) EntryConfChange \(change)"
        }
    }

    static func describe(_ snapshot: Snapshot) -> String {
        let metadata = snapshot.metadata
        return "Index:\(metadata.index) Term:\(metadata.term) \(describe(metadata.confState))"
    }

    /// `Voters:(1 2 3) Learners:(4)`.
    static func describe(_ confState: ConfState) -> String {
        let voters = confState.voters.map(\.description).joined(separator: " ")
        let learners = confState.learners.map(\.description).joined(separator: " ")
        return "Voters:(\(voters)) Learners:(\(learners))"
    }

    /// Only the parts of a Ready that are present, one item per line.
    static func describe(_ ready: Ready) -> [String] {
        var lines = ["Ready MustSync=\(ready.mustSync):"]
        if let softState = ready.softState {
            lines.append("Lead:\(softState.leader) State:\(softState.role.rawValue)")
        }
        if let hardState = ready.hardState {
            lines.append("HardState Term:\(hardState.term) Vote:\(hardState.vote) Commit:\(hardState.commit)")
        }
        if let snapshot = ready.snapshot { lines.append("Snapshot " + describe(snapshot)) }
        if !ready.entries.isEmpty {
            lines.append("Entries:")
            lines += ready.entries.map(describe)
        }
        if !ready.committedEntries.isEmpty {
            lines.append("CommittedEntries:")
            lines += ready.committedEntries.map(describe)
        }
        if !ready.messages.isEmpty {
            lines.append("Messages:")
            lines += ready.messages.map(describe)
        }
        if !ready.readStates.isEmpty {
            lines.append("ReadStates:")
            lines += ready.readStates.map { "Index:\($0.index) Context:\(quoted($0.requestContext))" }
        }
        return lines
    }

    /// `StateReplicate match=3 next=4 inflight=1`, with `learner`, `paused`, `pendingSnap=N`,
    /// `inactive` and `[full]` when they apply, as etcd-io/raft's Progress.String.
    static func describe(_ progress: Progress, isSelf: Bool) -> String {
        var text = "\(progress.state.rawValue) match=\(progress.match) next=\(progress.next)"
        if progress.isLearner { text += " learner" }
        if progress.isPaused { text += " paused" }
        if progress.state == .snapshot { text += " pendingSnap=\(progress.pendingSnapshot)" }
        // The leader always counts itself as active; only followers' flags say anything.
        if !isSelf && !progress.recentActive { text += " inactive" }
        if progress.inflights.count > 0 {
            text += " inflight=\(progress.inflights.count)"
            if progress.inflights.isFull { text += "[full]" }
        }
        return text
    }

    /// Bytes as a quoted string; anything unprintable is escaped.
    static func quoted(_ bytes: [UInt8]) -> String {
        var text = "\""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): text += "\\\""
            case UInt8(ascii: "\\"): text += "\\\\"
            case 0x20..<0x7F: text.append(Character(Unicode.Scalar(byte)))
            default: text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
            }
        }
        return text + "\""
    }
}
