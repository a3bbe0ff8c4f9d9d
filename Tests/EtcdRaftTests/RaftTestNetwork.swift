@testable import EtcdRaft
import Testing

// Helpers for tests that drive the internal `Raft` state machine directly, in the manner of
// etcd-io/raft's raft_test.go (`newTestRaft`, `network`, `readMessages`).

/// Shorthand for a member ID in tables.
func nid(_ raw: UInt64) -> NodeID { NodeID(raw) }

/// Entries with the given terms at indexes 1, 2, ... (empty payloads).
func entries(terms: [UInt64], from firstIndex: UInt64 = 1) -> [Entry] {
    terms.enumerated().map { Entry(term: $0.element, index: firstIndex + UInt64($0.offset)) }
}

/// A storage that already holds `terms` at indexes 1... under the given membership.
func makeStorage(
    voters: [UInt64],
    learners: [UInt64] = [],
    terms: [UInt64] = [],
    hardState: HardState? = nil
) -> MemoryStorage {
    let storage = MemoryStorage(
        confState: ConfState(voters: voters.map { NodeID($0) }, learners: learners.map { NodeID($0) })
    )
    storage.append(entries(terms: terms))
    if let hardState { storage.setHardState(hardState) }
    return storage
}

/// A node with CheckQuorum and PreVote off unless `configure` turns them on, so that the plain
/// protocol of the Raft paper is what runs.
func makeRaft(
    id: UInt64,
    voters: [UInt64] = [1, 2, 3],
    learners: [UInt64] = [],
    electionTicks: Int = 10,
    heartbeatTicks: Int = 1,
    storage existing: MemoryStorage? = nil,
    seed: UInt64? = nil,
    configure: (inout RaftConfiguration) -> Void = { _ in }
) -> Raft {
    let storage = existing ?? makeStorage(voters: voters, learners: learners)
    var configuration = RaftConfiguration(id: NodeID(id))
    configuration.electionTicks = electionTicks
    configuration.heartbeatTicks = heartbeatTicks
    configuration.checkQuorum = false
    configuration.preVote = false
    configure(&configuration)
    return Raft(configuration: configuration, storage: storage, random: SplitMix64(seed: seed ?? id))
}

extension Raft {
    /// Takes the messages produced so far, starting a pending ReadIndex heartbeat round first as
    /// `RaftNode.ready()` would.
    mutating func readMessages() -> [Message] {
        flushReadIndexRound()
        let taken = messages
        messages = []
        return taken
    }

    /// Steps a message that the test expects to be accepted.
    mutating func mustStep(_ message: Message, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try step(message)
        } catch {
            Issue.record("step \(message.type) failed: \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Writes the unstable entries to `storage` and marks them stable, as an application would
    /// after a Ready.
    mutating func persist(to storage: MemoryStorage) {
        if let snapshot = log.unstable.snapshot {
            try? storage.applySnapshot(snapshot)
            log.stableSnapshot(to: snapshot.metadata.index)
        }
        let unstable = log.unstableEntries
        storage.append(unstable)
        if let last = unstable.last { log.stable(to: last.index, term: last.term) }
        storage.setHardState(hardState)
    }

    /// Makes this (fresh) node leader of its current term + 1 and gets the leader's empty entry
    /// acknowledged by every follower, committed, persisted and applied (etcd's commitNoopEntry).
    mutating func becomeLeaderAndCommitNoop(storage: MemoryStorage) {
        becomeCandidate()
        becomeLeader()
        broadcastAppend()
        for message in readMessages() where message.type == .append {
            let last = message.index + UInt64(message.entries.count)
            mustStep(Message(type: .appendResponse, to: id, from: message.to, term: term, index: last))
        }
        _ = readMessages()
        persist(to: storage)
        log.applied(to: log.committed)
    }

    var roleAndTerm: String { "\(role.rawValue)@\(term)" }
}

/// Steps `message` and returns the error it threw, if any (`#expect(throws:)` cannot mutate).
func stepError(_ raft: inout Raft, _ message: Message) -> RaftError? {
    do {
        try raft.step(message)
        return nil
    } catch {
        return error
    }
}

/// A set of `Raft` nodes wired together with synchronous, in-order delivery (etcd's `network`).
/// A member missing from `peers` is a black hole; links can be cut and message types dropped.
struct RaftNetwork {
    struct Link: Hashable {
        var from: NodeID
        var to: NodeID
    }

    var peers: [NodeID: Raft] = [:]
    var storages: [NodeID: MemoryStorage] = [:]
    private(set) var cutLinks: Set<Link> = []
    private(set) var ignoredTypes: Set<MessageType> = []
    /// Called for every message about to be delivered; returning false drops it.
    var filter: ((Message) -> Bool)?
    /// Every message delivered, in order.
    private(set) var delivered: [Message] = []

    /// `size` voters 1...size with fresh storage, configured by `configure`.
    init(size: Int, configure: (inout RaftConfiguration) -> Void = { _ in }) {
        let ids = (1...UInt64(size)).map { $0 }
        for id in ids {
            let memberStorage = makeStorage(voters: ids)
            storages[NodeID(id)] = memberStorage
            peers[NodeID(id)] = makeRaft(id: id, voters: ids, storage: memberStorage, configure: configure)
        }
    }

    /// The given nodes; members in `blackHoles` exist in the configuration but never answer.
    init(_ nodes: [Raft]) {
        for node in nodes {
            peers[node.id] = node
            if let memberStorage = node.log.storage as? MemoryStorage { storages[node.id] = memberStorage }
        }
    }

    subscript(_ id: UInt64) -> Raft {
        get {
            guard let peer = peers[NodeID(id)] else { preconditionFailure("no peer \(id)") }
            return peer
        }
        set { peers[NodeID(id)] = newValue }
    }

    mutating func cut(_ first: UInt64, _ second: UInt64) {
        cutLinks.insert(Link(from: NodeID(first), to: NodeID(second)))
        cutLinks.insert(Link(from: NodeID(second), to: NodeID(first)))
    }

    mutating func isolate(_ id: UInt64) {
        for other in peers.keys where other != NodeID(id) { cut(id, other.rawValue) }
    }

    mutating func ignore(_ type: MessageType) { ignoredTypes.insert(type) }

    mutating func recover() {
        cutLinks = []
        ignoredTypes = []
    }

    /// Delivers `messages` and everything they cause until the network is quiet.
    mutating func send(_ messages: [Message]) {
        var queue = messages
        var position = 0
        while position < queue.count {
            let message = queue[position]
            position += 1
            precondition(position < 100_000, "network did not quiesce")
            if cutLinks.contains(Link(from: message.from, to: message.to)) { continue }
            if ignoredTypes.contains(message.type) { continue }
            if let filter, !filter(message) { continue }
            guard var peer = peers[message.to] else { continue }
            delivered.append(message)
            try? peer.step(message)
            queue.append(contentsOf: peer.readMessages())
            peers[message.to] = peer
        }
    }

    mutating func campaign(_ id: UInt64) {
        send([Message(type: .hup, to: NodeID(id), from: NodeID(id))])
    }

    mutating func propose(_ id: UInt64, _ data: [UInt8] = Array("somedata".utf8)) {
        send([Message(type: .propose, to: NodeID(id), from: NodeID(id), entries: [Entry(term: 0, index: 0, data: data)])])
    }

    /// Ticks one node and delivers what it sends.
    mutating func tick(_ id: UInt64, times: Int = 1) {
        for _ in 0..<times {
            guard var peer = peers[NodeID(id)] else { return }
            peer.tick()
            let produced = peer.readMessages()
            peers[NodeID(id)] = peer
            send(produced)
        }
    }

    /// Delivers messages a node produced outside `send` (e.g. after a direct `step`).
    mutating func flush(_ id: UInt64) {
        guard var peer = peers[NodeID(id)] else { return }
        let produced = peer.readMessages()
        peers[NodeID(id)] = peer
        send(produced)
    }

    mutating func clearDelivered() { delivered = [] }
}
