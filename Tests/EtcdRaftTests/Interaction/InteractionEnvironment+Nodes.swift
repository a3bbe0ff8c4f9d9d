@testable import EtcdRaft
import Logging

/// Commands that create nodes and feed them local inputs: time, proposals, campaigns, reads,
/// transport reports, restarts and compaction.
extension InteractionEnvironment {
    /// `add-nodes N [voters=(..)] [learners=(..)] [index=I] [options...]`: adds N nodes. With a
    /// membership, each starts from a snapshot at index I (term 1) holding it, the way a new
    /// group is bootstrapped; without one, the nodes start empty and learn their membership from
    /// the leader's snapshot once they are added to the group.
    func addNodes(_ command: InteractionCommand) throws(CommandError) {
        guard let countText = command.positional.first, let count = Int(countText), count > 0 else {
            throw CommandError("add-nodes: missing node count")
        }
        let voters = try (command.values("voters") ?? []).map { text throws(CommandError) in try parseRawID(text) }
        let learners = try (command.values("learners") ?? []).map { text throws(CommandError) in try parseRawID(text) }
        let index = try UInt64(command.value("index") ?? "0").orCommandError("add-nodes: bad index")
        for _ in 0..<count {
            let id = NodeID(UInt64(members.count + 1))
            let confState = ConfState(voters: voters, learners: learners)
            let storage: MemoryStorage
            if index > 0 {
                storage = MemoryStorage()
                let snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: 1, confState: confState))
                do {
                    try storage.applySnapshot(snapshot)
                } catch {
                    throw CommandError("add-nodes: \(error)")
                }
            } else {
                storage = MemoryStorage(confState: confState)
            }
            let configuration = try makeConfiguration(id: id, command)
            let node = RaftNode(configuration: configuration, storage: storage, random: SplitMix64(seed: id.rawValue))
            let startConf = (try? storage.snapshot().metadata) ?? SnapshotMetadata()
            members.append(
                Member(
                    node: node, storage: storage, configuration: configuration,
                    confStates: [(startConf.index, startConf.confState)]
                )
            )
        }
    }

    private func parseRawID(_ text: String) throws(CommandError) -> NodeID {
        guard let raw = UInt64(text), raw > 0 else { throw CommandError("bad node ID \(text)") }
        return NodeID(raw)
    }

    /// Small timeouts keep scripts short: an election fires after 3 to 5 ticks without a leader.
    private func makeConfiguration(id: NodeID, _ command: InteractionCommand) throws(CommandError) -> RaftConfiguration {
        var configuration = RaftConfiguration(id: id)
        configuration.electionTicks = 3
        configuration.heartbeatTicks = 1
        configuration.logger = Logger(label: "etcd.raft", factory: { [output] _ in InteractionLogHandler(output: output) })
        for argument in command.arguments where !argument.key.isEmpty {
            let value = argument.values.first ?? ""
            switch argument.key {
            case "voters", "learners", "index":
                continue
            case "prevote": configuration.preVote = try parseBool(value)
            case "checkquorum": configuration.checkQuorum = try parseBool(value)
            case "disable-proposal-forwarding": configuration.disableProposalForwarding = try parseBool(value)
            case "read-only":
                switch value {
                case "safe": configuration.readOnlyOption = .safe
                case "lease": configuration.readOnlyOption = .leaseBased
                default: throw CommandError("add-nodes: read-only must be safe or lease")
                }
            case "max-inflight": configuration.maxInflightMessages = try Int(value).orCommandError("bad max-inflight")
            case "max-msg-bytes": configuration.maxSizePerMessageBytes = try Int(value).orCommandError("bad max-msg-bytes")
            case "election": configuration.electionTicks = try Int(value).orCommandError("bad election")
            case "heartbeat": configuration.heartbeatTicks = try Int(value).orCommandError("bad heartbeat")
            default: throw CommandError("add-nodes: unknown option \(argument.key)")
            }
        }
        return configuration
    }

    private func parseBool(_ text: String) throws(CommandError) -> Bool {
        switch text {
        case "true": return true
        case "false": return false
        default: throw CommandError("expected true or false, got \(text)")
        }
    }

    /// `restart ID`: throws the node away and builds a new one from its storage, as after a
    /// crash. Whatever the node had not persisted through `process-ready` is lost; committed
    /// entries after the snapshot are applied again, configuration changes included.
    func restart(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        let position = Int(id.rawValue) - 1
        let old = members[position]
        let node = RaftNode(
            configuration: old.configuration, storage: old.storage, random: SplitMix64(seed: id.rawValue)
        )
        let start = (try? old.storage.snapshot().metadata) ?? SnapshotMetadata()
        members[position] = Member(
            node: node, storage: old.storage, configuration: old.configuration,
            confStates: [(start.index, start.confState)]
        )
    }

    /// `compact ID INDEX`: snapshots node ID's state at INDEX (which it must have applied) and
    /// discards its log up to there, then prints what is left.
    func compact(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        guard command.positional.count == 2, let index = UInt64(command.positional[1]) else {
            throw CommandError("compact: usage compact ID INDEX")
        }
        let member = member(id)
        guard index <= member.node.raft.log.applied else {
            throw CommandError("compact: index \(index) is not applied yet (applied \(member.node.raft.log.applied))")
        }
        let confState = member.confStates.last { $0.index <= index }?.confState ?? ConfState()
        do {
            try member.storage.createSnapshot(at: index, confState: confState, data: [])
            try member.storage.compact(upTo: index)
        } catch {
            throw CommandError("compact: \(error)")
        }
        printLog(of: id)
    }

    func campaign(_ command: InteractionCommand) throws(CommandError) {
        try withNode(try firstNodeID(command)) { node in node.campaign() }
    }

    /// `propose ID DATA`.
    func propose(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        guard command.positional.count == 2 else { throw CommandError("propose: usage propose ID DATA") }
        let data = Array(command.positional[1].utf8)
        try withNode(id) { node in
            do {
                try node.propose(data)
            } catch {
                write("raft: \(error)")
            }
        }
    }

    /// `propose-conf-change ID CHANGE`, where CHANGE is `v3` (add voter 3 or promote learner 3),
    /// `l3` (add learner 3) or `r3` (remove 3).
    func proposeConfChange(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        guard command.positional.count == 2, let change = ConfChange(shorthand: command.positional[1]) else {
            throw CommandError("propose-conf-change: usage propose-conf-change ID v3|l3|r3")
        }
        try withNode(id) { node in
            do {
                try node.proposeConfChange(change)
            } catch {
                write("raft: \(error)")
            }
        }
    }

    /// `tick ID... count=N`: N ticks on each listed node, one node after the other.
    func tick(_ command: InteractionCommand) throws(CommandError) {
        let count = try Int(command.value("count") ?? "1").orCommandError("tick: bad count")
        for word in command.positional {
            let id = try NodeID(UInt64(word).orCommandError("tick: bad node \(word)"))
            try withNode(id) { node in
                for _ in 0..<count { node.tick() }
            }
        }
    }

    /// `tick-heartbeat ID`: one heartbeat interval.
    func tickHeartbeat(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        let ticks = member(id).configuration.heartbeatTicks
        try withNode(id) { node in
            for _ in 0..<ticks { node.tick() }
        }
    }

    /// `tick-election ID`: ticks until the node's timer fires once. A follower or candidate
    /// ticks up to its randomized election timeout and campaigns on the last tick; a leader
    /// ticks up to the (fixed) election timeout, where it checks its quorum and abandons a
    /// leadership transfer.
    func tickElection(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        try withNode(id) { node in
            let raft = node.raft
            let timeout = raft.role == .leader ? raft.electionTimeout : raft.randomizedElectionTimeout
            for _ in 0..<max(1, timeout - raft.electionElapsed) { node.tick() }
        }
    }

    /// `set-randomized-election-timeout ID timeout=N`.
    func setRandomizedElectionTimeout(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        let timeout = try Int(command.value("timeout") ?? "").orCommandError("set-randomized-election-timeout: bad timeout")
        try withNode(id) { node in node.raft.randomizedElectionTimeout = timeout }
    }

    /// `transfer-leadership from=ID to=ID`.
    func transferLeadership(_ command: InteractionCommand) throws(CommandError) {
        let from = try nodeID(command.value("from") ?? "")
        let to = try nodeID(command.value("to") ?? "")
        try withNode(from) { node in node.transferLeadership(to: to) }
    }

    /// `read-index ID CONTEXT`.
    func readIndex(_ command: InteractionCommand) throws(CommandError) {
        let id = try firstNodeID(command)
        guard command.positional.count == 2 else { throw CommandError("read-index: usage read-index ID CONTEXT") }
        let context = Array(command.positional[1].utf8)
        try withNode(id) { node in
            do {
                try node.readIndex(context: context)
            } catch {
                write("raft: \(error)")
            }
        }
    }

    /// `report-unreachable ID PEER`: node ID's transport could not reach PEER.
    func reportUnreachable(_ command: InteractionCommand) throws(CommandError) {
        let ids = command.positional
        guard ids.count == 2 else { throw CommandError("report-unreachable: usage report-unreachable ID PEER") }
        let peer = try nodeID(ids[1])
        try withNode(try nodeID(ids[0])) { node in node.reportUnreachable(peer) }
    }

    /// `report-snapshot ID PEER [failed=true]`: how sending a snapshot from ID to PEER ended.
    func reportSnapshot(_ command: InteractionCommand) throws(CommandError) {
        let ids = command.positional
        guard ids.count == 2 else { throw CommandError("report-snapshot: usage report-snapshot ID PEER [failed=true]") }
        let peer = try nodeID(ids[1])
        let failed = try parseBool(command.value("failed") ?? "false")
        try withNode(try nodeID(ids[0])) { node in node.reportSnapshot(peer, status: failed ? .failed : .finished) }
    }
}

extension ConfChange {
    /// `v3`, `l3` or `r3`, as etcd-io/raft's scripts write changes.
    init?(shorthand: String) {
        guard let first = shorthand.first, let raw = UInt64(shorthand.dropFirst()), raw > 0 else { return nil }
        switch first {
        case "v": self.init(kind: .addNode, nodeID: NodeID(raw))
        case "l": self.init(kind: .addLearnerNode, nodeID: NodeID(raw))
        case "r": self.init(kind: .removeNode, nodeID: NodeID(raw))
        default: return nil
        }
    }

    var shorthand: String {
        switch kind {
        case .addNode: "v\(nodeID)"
        case .addLearnerNode: "l\(nodeID)"
        case .removeNode: "r\(nodeID)"
        case .updateNode: "u\(nodeID)"
        }
    }
}

extension Optional {
    func orCommandError(_ message: String) throws(InteractionEnvironment.CommandError) -> Wrapped {
        guard let self else { throw InteractionEnvironment.CommandError(message) }
        return self
    }
}
