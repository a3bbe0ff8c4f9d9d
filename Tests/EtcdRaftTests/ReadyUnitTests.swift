@testable import EtcdRaft
import Testing

/// The Ready/advance contract of `RaftNode`.
@Suite struct ReadyUnitTests {
    static func makeNode(id: UInt64 = 1, voters: [UInt64], configure: (inout RaftConfiguration) -> Void = { _ in }) -> (RaftNode, MemoryStorage) {
        let memberStorage = MemoryStorage(confState: ConfState(voters: voters.map { NodeID($0) }))
        var configuration = RaftConfiguration(id: NodeID(id))
        configure(&configuration)
        return (RaftNode(configuration: configuration, storage: memberStorage, random: SplitMix64(seed: id)), memberStorage)
    }

    /// Persists what a Ready carries and advances.
    static func handle(_ ready: Ready, node: inout RaftNode, storage: MemoryStorage) {
        if let snapshot = ready.snapshot { try? storage.applySnapshot(snapshot) }
        if let hardState = ready.hardState { storage.setHardState(hardState) }
        storage.append(ready.entries)
        node.advance(ready)
    }

    @Test("a fresh node has nothing to do; its first Ready after campaigning carries everything that changed")
    func firstReady() {
        var (node, memberStorage) = Self.makeNode(voters: [1])
        do {
            let hasReady = node.hasReady()
            #expect(!hasReady)
        }
        node.campaign()
        do {
            let hasReady = node.hasReady()
            #expect(hasReady)
        }
        let ready = node.ready()
        #expect(ready.softState == SoftState(leader: nid(1), role: .leader))
        #expect(ready.hardState == HardState(term: 1, vote: nid(1), commit: 1))
        #expect(ready.entries == [Entry(term: 1, index: 1)])
        #expect(ready.committedEntries == [Entry(term: 1, index: 1)])
        #expect(ready.messages.isEmpty)
        #expect(ready.mustSync)
        #expect(!ready.isEmpty)
        Self.handle(ready, node: &node, storage: memberStorage)
        do {
            let hasReady = node.hasReady()
            #expect(!hasReady)
        }
        let empty = node.ready()
        #expect(empty.isEmpty)
        #expect(empty.softState == nil)
        #expect(empty.hardState == nil)
        #expect(!empty.mustSync)
        node.advance(empty)
        #expect(node.status.applied == 1)
    }

    @Test("mustSync: new entries, a new term or a new vote need an fsync; a new commit index alone does not")
    func mustSyncRules() throws {
        var (node, memberStorage) = Self.makeNode(id: 2, voters: [1, 2, 3])
        // A vote at a new term: term and vote change.
        try node.step(Message(type: .vote, to: nid(2), from: nid(1), term: 1))
        var ready = node.ready()
        #expect(ready.hardState == HardState(term: 1, vote: nid(1), commit: 0))
        #expect(ready.entries.isEmpty)
        #expect(ready.mustSync)
        Self.handle(ready, node: &node, storage: memberStorage)

        // Entries from the leader.
        try node.step(Message(type: .append, to: nid(2), from: nid(1), term: 1, entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 2)]))
        ready = node.ready()
        #expect(ready.hardState == nil)
        #expect(ready.entries.count == 2)
        #expect(ready.mustSync)
        #expect(ready.softState == SoftState(leader: nid(1), role: .follower))
        Self.handle(ready, node: &node, storage: memberStorage)

        // Only the commit index moves.
        try node.step(Message(type: .heartbeat, to: nid(2), from: nid(1), term: 1, commit: 2))
        ready = node.ready()
        #expect(ready.hardState == HardState(term: 1, vote: nid(1), commit: 2))
        #expect(ready.entries.isEmpty)
        #expect(ready.committedEntries.map(\.index) == [1, 2])
        #expect(!ready.mustSync)
        Self.handle(ready, node: &node, storage: memberStorage)

        // A new term without a vote still needs a sync.
        try node.step(Message(type: .heartbeat, to: nid(2), from: nid(3), term: 2, commit: 2))
        ready = node.ready()
        #expect(ready.hardState == HardState(term: 2, vote: .none, commit: 2))
        #expect(ready.mustSync)
        #expect(ready.softState == SoftState(leader: nid(3), role: .follower))
    }

    @Test("committed entries are handed out in Readies of at most maxCommittedBytesPerReady")
    func committedEntriesAreLimited() throws {
        var (node, memberStorage) = Self.makeNode(id: 2, voters: [1, 2, 3]) { $0.maxCommittedBytesPerReady = 160 }
        // 50 + 24 = 74 bytes each: two fit in 160.
        let entries = (1...5).map { Entry(term: 1, index: UInt64($0), data: [UInt8](repeating: UInt8($0), count: 50)) }
        try node.step(Message(type: .append, to: nid(2), from: nid(1), term: 1, entries: entries, commit: 5))
        var batches: [[UInt64]] = []
        while node.hasReady() {
            let ready = node.ready()
            if !ready.committedEntries.isEmpty { batches.append(ready.committedEntries.map(\.index)) }
            Self.handle(ready, node: &node, storage: memberStorage)
        }
        #expect(batches == [[1, 2], [3, 4], [5]])
        #expect(node.status.applied == 5)
    }

    @Test("messages and read states are handed out once")
    func messagesAndReadStatesOnce() throws {
        var (node, memberStorage) = Self.makeNode(voters: [1])
        node.campaign()
        Self.handle(node.ready(), node: &node, storage: memberStorage)
        try node.readIndex(context: [1])
        var ready = node.ready()
        #expect(ready.readStates == [ReadState(index: 1, requestContext: [1])])
        Self.handle(ready, node: &node, storage: memberStorage)
        ready = node.ready()
        #expect(ready.readStates.isEmpty)
        node.advance(ready)

        var (follower, followerStorage) = Self.makeNode(id: 2, voters: [1, 2, 3])
        try follower.step(Message(type: .heartbeat, to: nid(2), from: nid(1), term: 1))
        ready = follower.ready()
        #expect(ready.messages == [Message(type: .heartbeatResponse, to: nid(1), from: nid(2), term: 1)])
        Self.handle(ready, node: &follower, storage: followerStorage)
        ready = follower.ready()
        #expect(ready.messages.isEmpty)
    }

    @Test("a snapshot from the leader comes in a Ready that must be synced, and advancing applies it")
    func snapshotReady() throws {
        var (node, memberStorage) = Self.makeNode(id: 2, voters: [1, 2, 3])
        let snapshot = Snapshot(
            metadata: SnapshotMetadata(index: 7, term: 3, confState: ConfState(voters: [nid(1), nid(2), nid(3)])), data: [1]
        )
        try node.step(Message(type: .snapshot, to: nid(2), from: nid(1), term: 3, snapshot: snapshot))
        let ready = node.ready()
        #expect(ready.snapshot == snapshot)
        #expect(ready.mustSync)
        #expect(ready.committedEntries.isEmpty)
        #expect(ready.messages == [Message(type: .appendResponse, to: nid(1), from: nid(2), term: 3, index: 7)])
        Self.handle(ready, node: &node, storage: memberStorage)
        let status = node.status
        #expect(status.applied == 7)
        #expect(status.firstIndex == 8)
        #expect(status.hardState.commit == 7)
        do {
            let hasReady = node.hasReady()
            #expect(!hasReady)
        }
    }

    @Test("step refuses local message types and responses from unknown members")
    func stepGuards() {
        var (node, _) = Self.makeNode(voters: [1, 2, 3])
        var caught: RaftError?
        do { try node.step(Message(type: .hup, to: nid(1), from: nid(1))) } catch { caught = error }
        #expect(caught == .stepLocalMessage)
        caught = nil
        do { try node.step(Message(type: .appendResponse, to: nid(1), from: nid(9), term: 1)) } catch { caught = error }
        #expect(caught == .stepPeerNotFound)
    }

    @Test("status reports progress only on the leader, sorted by member")
    func statusProgress() {
        var (node, memberStorage) = Self.makeNode(voters: [1])
        #expect(node.status.progress.isEmpty)
        node.campaign()
        Self.handle(node.ready(), node: &node, storage: memberStorage)
        let status = node.status
        #expect(status.progress.map(\.id) == [nid(1)])
        #expect(status.progress.first?.match == 1)
        #expect(status.softState.role == .leader)
        #expect(node.committedIndex == 1)
    }
}
