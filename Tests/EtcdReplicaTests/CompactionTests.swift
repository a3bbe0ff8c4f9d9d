import EtcdAPI
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Testing

@Suite("Compaction")
struct CompactionTests {
    private func fixture() throws -> TestReplica {
        let replica = try TestReplica()
        for value in ["1", "2", "3", "4"] { try replica.put("a", value) }  // 2...5
        return replica
    }

    @Test("compaction through the log forgets older revisions and answers the current revision")
    func compact() throws {
        let replica = try fixture()
        let response = try replica.compact(3)
        #expect(response.header.revision == 5)
        #expect(replica.store.currentRevision == 5)
        #expect(replica.store.compactedRevision == 3)
        #expect(throws: ReplicaError.request(.compacted)) { try replica.range("a", revision: 2) }
        #expect(try replica.range("a", revision: 3).kvs.map(\.value) == [data("2")])
        #expect(try replica.put("b").header.revision == 6)
    }

    @Test("compacting at or below the compaction point again is compacted")
    func twice() throws {
        let replica = try fixture()
        try replica.compact(3)
        #expect(throws: ReplicaError.request(.compacted)) { try replica.compact(3) }
        #expect(throws: ReplicaError.request(.compacted)) { try replica.compact(2) }
        #expect(try replica.compact(4).header.revision == 5)
        #expect(replica.store.compactedRevision == 4)
    }

    @Test("compacting past the current revision is a future revision; the current one is allowed")
    func future() throws {
        let replica = try fixture()
        #expect(throws: ReplicaError.request(.futureRevision)) { try replica.compact(6) }
        #expect(replica.store.compactedRevision == 0)
        #expect(try replica.compact(5).header.revision == 5)
        #expect(try replica.get("a").value == data("4"))
    }

    @Test("a compacted-away key stays deleted, and the live keys keep their history fields")
    func keepsLatest() throws {
        let replica = try TestReplica()
        try replica.put("gone", "1")  // 2
        try replica.delete("gone")  // 3
        try replica.put("kept", "1")  // 4
        try replica.put("kept", "2")  // 5
        try replica.compact(5)
        #expect(try replica.range("gone").count == 0)
        let kept = try replica.get("kept")
        #expect(kept.createRevision == 4)
        #expect(kept.version == 2)
    }
}
