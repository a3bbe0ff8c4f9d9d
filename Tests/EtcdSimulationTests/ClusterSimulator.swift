import EtcdRaft

/// A whole Raft group in one thread, driven step by step from one seed (TigerBeetle's VOPR,
/// FoundationDB's simulation): the real `RaftNode`s, with the network, disks, clocks and clients
/// faked. After every step the safety checkers have seen everything that changed.
///
/// A step is one event: deliver one message, tick the clocks, a client request, a fault (crash,
/// restart, partition, heal), a membership change or a leadership transfer. The Ready cycle of a
/// node that an event touched runs within the same step (persist, send, apply, advance), unless
/// a crash cuts it short.
final class ClusterSimulator {
    let seed: UInt64
    var random: SimRandom
    let profile: SimProfile
    /// Members in ID order (IDs only grow, so appending keeps the order).
    private(set) var nodes: [SimNode] = []
    private var nodesByID: [NodeID: SimNode] = [:]
    var network = SimNetwork()
    var safety = SafetyChecker()
    var linearizability = LinearizabilityChecker()
    /// Logical time in ticks.
    private(set) var now: UInt64 = 0
    /// Steps taken so far.
    var step: UInt64 = 0
    var trace: TraceBuffer
    /// Print every event as it happens (replaying one seed).
    let printsTrace: Bool
    /// Off during a liveness check: no new faults, short delays.
    var faultsEnabled = true
    var nextWriteID: UInt64 = 1
    var nextReadID: UInt64 = 1
    var nextNodeID: UInt64
    /// Members whose removal has been committed: they are never restarted.
    var removedIDs: Set<NodeID> = []
    var statistics = Statistics()

    struct Statistics {
        var ticks = 0
        var delivered = 0
        var dropped = 0
        var crashes = 0
        var restarts = 0
        var elections = 0
        var snapshotsTaken = 0
        var snapshotsInstalled = 0
        var confChangesApplied = 0
        var livenessTicks = 0
    }

    static let electionTicks = 10
    static let maxMembers = 7
    static let minVoters = 3
    /// Bound on the member IDs ever created, so membership churn stays bounded too.
    static let maxNodeID: UInt64 = 40
    /// Bound on client requests a member holds at once.
    static let maxOutstandingRequests = 64

    /// `adjust` may change the drawn profile, for scenario tests that need a fixed shape.
    init(
        seed: UInt64, printsTrace: Bool = false, traceCapacity: Int = 200,
        adjust: (inout SimProfile) -> Void = { _ in }
    ) {
        self.seed = seed
        random = SimRandom(seed: seed)
        var profile = SimProfile(random: &random)
        adjust(&profile)
        self.profile = profile
        self.printsTrace = printsTrace
        trace = TraceBuffer(capacity: traceCapacity)
        nextNodeID = UInt64(profile.clusterSize) + 1
    }

    // MARK: Members

    func node(_ id: NodeID) -> SimNode? { nodesByID[id] }

    var runningNodes: [SimNode] { nodes.filter(\.isRunning) }

    /// The running leader with the highest term, if any.
    var currentLeader: SimNode? {
        var best: SimNode?
        for node in nodes where node.isRunning && node.role == .leader {
            if best.map({ node.term > $0.term }) ?? true { best = node }
        }
        return best
    }

    /// Creates the initial group. Like etcd's bootstrap, the log starts with one committed
    /// addNode entry per initial voter, so a member that joins later and replays the log from
    /// index 1 learns the initial membership too.
    func bootstrap() throws(SimulationFailure) {
        let voters = (1...profile.clusterSize).map { NodeID(UInt64($0)) }
        let entries = voters.enumerated().map { offset, id in
            Entry(term: 1, index: UInt64(offset + 1), type: .confChange, data: ConfChange(kind: .addNode, nodeID: id).encoded())
        }
        let hardState = HardState(term: 1, vote: .none, commit: UInt64(voters.count))
        for id in voters {
            let storage = MemoryStorage(confState: ConfState(voters: voters))
            storage.append(entries)
            storage.setHardState(hardState)
            let node = SimNode(id: id, isInitialMember: true, storage: storage, confState: ConfState(voters: voters))
            node.syncedHardState = hardState
            try safety.recordPersisted(entries, node: id, previousTerm: 0)
            add(node)
            start(node)
        }
    }

    private func add(_ node: SimNode) {
        precondition(nodesByID[node.id] == nil, "sim: member \(node.id) added twice")
        precondition(nodes.last.map { $0.id < node.id } ?? true, "sim: member \(node.id) added out of order")
        nodes.append(node)
        nodesByID[node.id] = node
    }

    /// Starts a process on the node's disk: a fresh RaftNode whose applied index is the
    /// snapshot's, so the committed entries after it are handed out (and re-applied) again.
    func start(_ node: SimNode) {
        let snapshotIndex = node.storage.currentSnapshot.metadata.index
        let configuration = profile.configuration(for: node.id, applied: snapshotIndex)
        node.raft = RaftNode(configuration: configuration, storage: node.storage, random: SplitMix64(seed: random.next()))
        node.lifecycle = .running
        node.incarnation += 1
        node.term = node.storage.hardState.term
        node.commit = node.storage.hardState.commit
        node.role = .follower
        node.leader = .none
    }

    /// A member added by a committed configuration change starts with an empty disk; the
    /// leader brings it up to date with appends or a snapshot.
    func spawn(_ id: NodeID) {
        let node = SimNode(id: id, isInitialMember: false, storage: MemoryStorage(), confState: ConfState())
        add(node)
        start(node)
        record(.spawn(node: id))
    }

    func retire(_ node: SimNode) {
        guard node.lifecycle != .retired else { return }
        dropClientRequests(of: node)
        node.raft = nil
        node.lifecycle = .retired
        record(.retire(node: node.id))
    }

    func dropClientRequests(of node: SimNode) {
        // The clients lose their connection: their writes stay pending (they may or may not
        // take effect) and their reads never complete.
        for id in node.clientReads.keys.sorted() { linearizability.abandonRead(id: id) }
        node.clientReads.removeAll()
        node.clientWrites.removeAll()
        node.readsAwaitingApply.removeAll()
    }

    // MARK: Tracing

    func record(_ event: TraceEvent) {
        trace.append(step: step, event)
        if printsTrace { print("[\(step)] \(event)") }
    }

    // MARK: Time

    /// Advances the clock one tick on every running member (lockstep, except for the drift a
    /// profile may add under safe reads).
    func tick() throws(SimulationFailure) {
        now += 1
        statistics.ticks += 1
        record(.tick(time: now))
        let skipRate = faultsEnabled ? profile.tickSkipRate : 0
        for node in nodes where node.isRunning {
            if skipRate > 0 && random.chance(skipRate) { continue }
            node.raft?.tick()
            try processReadies(node)
        }
    }

    // MARK: Network

    /// Hands a node's outgoing messages to the network, which may lose, duplicate or delay them.
    func send(_ messages: [Message]) {
        for message in messages {
            // Proposals are not duplicated: the transport is TCP-like, and a duplicated client
            // command is the application's business (request IDs), not Raft's.
            if faultsEnabled && message.type != .propose && random.chance(profile.duplicateRate) {
                record(.duplicate(message))
                enqueue(message, reordered: true)
            }
            if faultsEnabled && random.chance(profile.lossRate) {
                record(.drop(message, reason: "lost"))
                statistics.dropped += 1
                reportFailedSend(message)
                continue
            }
            enqueue(message, reordered: faultsEnabled && random.chance(profile.reorderRate))
        }
    }

    private func enqueue(_ message: Message, reordered: Bool) {
        let delay: Int
        if faultsEnabled && random.chance(profile.longDelayRate) {
            delay = random.int(in: 0...(4 * Self.electionTicks))
        } else {
            delay = random.int(in: 0...(faultsEnabled ? profile.maxDelayTicks : min(profile.maxDelayTicks, 2)))
        }
        let link = reordered ? nil : Link(from: message.from, to: message.to)
        guard network.enqueue(.message(message), deliverAt: now + UInt64(delay), orderedLink: link) else {
            preconditionFailure("sim: seed \(seed): network queue full at step \(step)")
        }
    }

    /// The transport tells the leader when a send failed: always for a snapshot (so it retries
    /// one), sometimes as "unreachable" for anything else.
    private func reportFailedSend(_ message: Message) {
        let parcel: Parcel
        if message.type == .snapshot {
            parcel = .snapshotStatus(leader: message.from, follower: message.to, status: .failed)
        } else if random.chance(0.2) {
            parcel = .unreachable(leader: message.from, follower: message.to)
        } else {
            return
        }
        _ = network.enqueue(parcel, deliverAt: now + UInt64(random.int(in: 0...2)))
    }

    /// Delivers the `ordinal`-th due parcel.
    func deliver(ordinal: Int) throws(SimulationFailure) {
        switch network.takeDue(ordinal: ordinal, now: now) {
        case .message(let message):
            guard let target = node(message.to), target.isRunning else {
                record(.drop(message, reason: "receiver down"))
                statistics.dropped += 1
                reportFailedSend(message)
                return
            }
            if network.isBlocked(from: message.from, to: message.to) {
                record(.drop(message, reason: "partitioned"))
                statistics.dropped += 1
                reportFailedSend(message)
                return
            }
            record(.deliver(message))
            statistics.delivered += 1
            do {
                try target.raft?.step(message)
            } catch {
                // Dropped proposals and answers from unknown members are normal under faults.
            }
            if message.type == .snapshot {
                _ = network.enqueue(
                    .snapshotStatus(leader: message.from, follower: message.to, status: .finished),
                    deliverAt: now + UInt64(random.int(in: 0...2)))
            }
            try processReadies(target)
        case .snapshotStatus(let leader, let follower, let status):
            guard let node = node(leader), node.isRunning else { return }
            record(.report(leader: leader, follower: follower, what: status == .finished ? "snapshot sent" : "snapshot failed"))
            node.raft?.reportSnapshot(follower, status: status)
            try processReadies(node)
        case .unreachable(let leader, let follower):
            guard let node = node(leader), node.isRunning else { return }
            record(.report(leader: leader, follower: follower, what: "unreachable"))
            node.raft?.reportUnreachable(follower)
            try processReadies(node)
        }
    }
}
