import Testing

@testable import EtcdBenchmark

/// The `raft` subcommand's in-memory group must really replicate and commit what it proposes,
/// or its throughput figure means nothing.
@Suite("Raft benchmark group")
struct RaftBenchmarkTests {
    @Test("Commits every proposed entry, across compactions, on 1, 3 and 5 members", arguments: [1, 3, 5])
    func commitsEverything(members: Int) {
        var group = InMemoryRaftGroup(size: members)
        group.electFirstMember()
        let run = group.commit(total: 5_000, batch: 64, entrySize: 100, compactEvery: 1_000)
        #expect(group.committedAtLeader == 5_000)
        #expect(run.proposalsDropped == 0)
        // Compaction ran on every member: their logs no longer start at index 1.
        #expect(group.firstIndexes.allSatisfy { $0 > 1_000 }, "first indexes \(group.firstIndexes)")
    }
}
