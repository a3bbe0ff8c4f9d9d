import EtcdRaft

/// The random schedule: each step either delivers a due message or draws one action.
extension ClusterSimulator {
    /// Runs one step of the randomized schedule: a client request, a fault, a membership change
    /// or a transfer with their per-step rates; otherwise a due message (a random one, which
    /// reorders them); otherwise, when nothing is due, a tick. Time thus only moves once the
    /// messages due now are delivered, and a message's delay is exactly the one drawn for it.
    func randomStep() throws(SimulationFailure) {
        step += 1
        var roll = random.double(0, 1)
        func take(_ rate: Double) -> Bool {
            if roll < rate { return true }
            roll -= rate
            return false
        }
        if take(profile.writeRate) {
            try clientWrite()
        } else if take(profile.readRate) {
            try clientRead()
        } else if take(profile.partitionRate) {
            startPartition()
        } else if network.isPartitioned && take(profile.healRate) {
            network.healAll()
            record(.heal)
        } else if take(profile.crashRate) {
            crashRandomNode()
        } else if take(profile.restartRate) {
            try restartRandomNode()
        } else if take(profile.confChangeRate) {
            try proposeConfChange()
        } else if take(profile.transferRate) {
            try transferLeadership()
        } else {
            let due = network.dueCount(now: now)
            if due > 0 {
                try deliver(ordinal: random.below(due))
            } else {
                try tick()
            }
        }
    }

    // MARK: Clients

    func clientWrite() throws(SimulationFailure) {
        let candidates = runningNodes
        guard !candidates.isEmpty else { return try tick() }
        let node = random.pick(candidates)
        guard node.clientWrites.count < Self.maxOutstandingRequests else { return }
        let key = random.below(KVStateMachine.keyCount)
        try propose(WriteCommand(key: key, writeID: allocateWriteID()), at: node)
    }

    func allocateWriteID() -> UInt64 {
        defer { nextWriteID += 1 }
        return nextWriteID
    }

    /// Proposes a write at `node` on behalf of a client; returns whether Raft accepted it.
    @discardableResult
    func propose(_ write: WriteCommand, at node: SimNode) throws(SimulationFailure) -> Bool {
        linearizability.invokeWrite(id: write.writeID, key: write.key, step: step)
        var accepted = true
        do {
            try node.raft?.propose(write.encoded())
            node.clientWrites[write.writeID] = write.key
        } catch {
            accepted = false
            linearizability.abandonWrite(id: write.writeID)
        }
        record(.propose(node: node.id, writeID: write.writeID, key: write.key, accepted: accepted))
        try processReadies(node)
        return accepted
    }

    func clientRead() throws(SimulationFailure) {
        let candidates = runningNodes
        guard !candidates.isEmpty else { return try tick() }
        let node = random.pick(candidates)
        guard node.clientReads.count < Self.maxOutstandingRequests else { return }
        let key = random.below(KVStateMachine.keyCount)
        let id = nextReadID
        nextReadID += 1
        linearizability.invokeRead(id: id, key: key, step: step)
        var context: [UInt8] = []
        Bytes.append(id, to: &context)
        var accepted = true
        do {
            try node.raft?.readIndex(context: context)
            node.clientReads[id] = SimNode.ClientRead(key: key)
        } catch {
            accepted = false
            linearizability.abandonRead(id: id)
        }
        record(.read(node: node.id, readID: id, key: key, accepted: accepted))
        try processReadies(node)
    }

    // MARK: Faults

    /// Members that take part in partitions and crashes: everyone not retired.
    private var liveMembers: [SimNode] { nodes.filter { $0.lifecycle != .retired } }

    func startPartition() {
        let members = liveMembers.map(\.id)
        guard members.count >= 2 else { return }
        switch random.below(3) {
        case 0:
            // Symmetric split into a minority and the rest.
            var shuffled = members
            for position in stride(from: shuffled.count - 1, to: 0, by: -1) {
                shuffled.swapAt(position, random.below(position + 1))
            }
            let minority = Array(shuffled.prefix(random.int(in: 1...(members.count / 2))))
            for a in minority {
                for b in members where !minority.contains(b) {
                    network.block(from: a, to: b)
                    network.block(from: b, to: a)
                }
            }
            record(.partition(description: "symmetric \(minority.sorted()) | rest"))
        case 1:
            // One-way: a member can send but not receive, or the other way round.
            let a = random.pick(members)
            let outgoing = random.chance(0.5)
            for b in members where b != a {
                if outgoing { network.block(from: a, to: b) } else { network.block(from: b, to: a) }
            }
            record(.partition(description: "one-way: \(a) \(outgoing ? "cannot send" : "cannot receive")"))
        default:
            // A single directed link.
            let a = random.pick(members)
            let b = random.pick(members)
            guard a != b else { return }
            network.block(from: a, to: b)
            record(.partition(description: "link \(a)->\(b)"))
        }
    }

    func crashRandomNode() {
        let candidates = runningNodes
        guard !candidates.isEmpty else { return }
        crash(random.pick(candidates), when: "between steps")
    }

    func restartRandomNode() throws(SimulationFailure) {
        let candidates = nodes.filter { $0.lifecycle == .crashed }
        guard !candidates.isEmpty else { return }
        try restart(random.pick(candidates))
    }

    // MARK: Membership and leadership

    /// Proposes one membership change at the leader, keeping 3...7 members and at least 3
    /// voters. Raft accepts a change only once every earlier one in the leader's log is applied
    /// (otherwise it turns it into a no-op), so the leader's applied membership is current.
    func proposeConfChange() throws(SimulationFailure) {
        guard let leader = currentLeader else { return }
        let conf = leader.confState
        let memberCount = conf.voters.count + conf.learners.count
        var choices: [ConfChange] = []
        if memberCount < Self.maxMembers && nextNodeID <= Self.maxNodeID {
            choices.append(ConfChange(kind: .addLearnerNode, nodeID: NodeID(nextNodeID)))
            choices.append(ConfChange(kind: .addNode, nodeID: NodeID(nextNodeID)))
        }
        for learner in conf.learners {
            choices.append(ConfChange(kind: .addNode, nodeID: learner))
            choices.append(ConfChange(kind: .removeNode, nodeID: learner))
        }
        if conf.voters.count > Self.minVoters {
            let voter = random.pick(conf.voters)
            choices.append(ConfChange(kind: .removeNode, nodeID: voter))
            choices.append(ConfChange(kind: .addLearnerNode, nodeID: voter))
        }
        guard !choices.isEmpty else { return }
        let change = random.pick(choices)
        if change.nodeID.rawValue == nextNodeID { nextNodeID += 1 }
        var accepted = true
        do {
            try leader.raft?.proposeConfChange(change)
        } catch {
            accepted = false
        }
        record(.proposeConfChange(leader: leader.id, change: change, accepted: accepted))
        try processReadies(leader)
    }

    func transferLeadership() throws(SimulationFailure) {
        guard let leader = currentLeader else { return }
        let targets = leader.confState.voters.filter { $0 != leader.id }
        guard !targets.isEmpty else { return }
        let target = random.pick(targets)
        record(.transfer(leader: leader.id, to: target))
        leader.raft?.transferLeadership(to: target)
        try processReadies(leader)
    }
}
