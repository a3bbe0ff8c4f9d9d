import EtcdRaft
import Testing

/// A three-member group driven through the public API with perfect delivery: the smallest
/// end-to-end check that election, replication and commit work together.
@Suite struct RaftSmokeTests {
    struct Member {
        var node: RaftNode
        let storage: MemoryStorage
        var applied: [[UInt8]] = []
    }

    static func makeGroup(size: Int) -> [NodeID: Member] {
        let ids = (1...size).map { NodeID(UInt64($0)) }
        var members: [NodeID: Member] = [:]
        for id in ids {
            let storage = MemoryStorage(confState: ConfState(voters: ids))
            let node = RaftNode(
                configuration: RaftConfiguration(id: id), storage: storage, random: SplitMix64(seed: id.rawValue))
            members[id] = Member(node: node, storage: storage)
        }
        return members
    }

    /// Runs Ready cycles until no member has anything left to do; returns how many messages moved.
    @discardableResult
    static func stabilize(_ members: inout [NodeID: Member]) -> Int {
        var delivered = 0
        var progressed = true
        while progressed {
            progressed = false
            for id in members.keys.sorted() {
                guard var member = members[id], member.node.hasReady() else { continue }
                progressed = true
                let ready = member.node.ready()
                if let hardState = ready.hardState { member.storage.setHardState(hardState) }
                member.storage.append(ready.entries)
                for entry in ready.committedEntries where entry.type == .normal && !entry.data.isEmpty {
                    member.applied.append(entry.data)
                }
                member.node.advance(ready)
                members[id] = member
                for message in ready.messages {
                    try? members[message.to]?.node.step(message)
                    delivered += 1
                }
            }
        }
        return delivered
    }

    @Test func electsALeaderAndCommitsProposals() throws {
        var members = Self.makeGroup(size: 3)
        members[NodeID(1)]?.node.campaign()
        Self.stabilize(&members)
        let leaders = members.values.filter { $0.node.status.softState.role == .leader }
        #expect(leaders.map(\.node.id) == [NodeID(1)])

        try members[NodeID(2)]?.node.propose(Array("via follower".utf8))
        try members[NodeID(1)]?.node.propose(Array("via leader".utf8))
        Self.stabilize(&members)
        // Heartbeats carry the commit index to followers.
        for _ in 0..<2 { members[NodeID(1)]?.node.tick() }
        Self.stabilize(&members)
        // The forwarded proposal reaches the leader's log after the local one.
        for id in members.keys.sorted() {
            let applied = try #require(members[id]).applied.map { String(decoding: $0, as: UTF8.self) }
            #expect(applied == ["via leader", "via follower"], "member \(id)")
        }
    }
}
