import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdReplica
import Foundation
import Testing

extension TestReplica {
    @discardableResult
    func grant(_ id: Int64, ttl: Int64) throws -> Etcdserverpb_LeaseGrantResponse {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.leaseGrant.id = id
        raft.leaseGrant.ttl = ttl
        guard case .leaseGrant(let response) = try apply(raft) else { throw UnexpectedResponse(description: "not a grant") }
        return response
    }

    @discardableResult
    func revoke(_ id: Int64) throws -> Etcdserverpb_LeaseRevokeResponse {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.leaseRevoke.id = id
        guard case .leaseRevoke(let response) = try apply(raft) else { throw UnexpectedResponse(description: "not a revoke") }
        return response
    }

    func checkpoint(_ id: Int64, remaining: Int64) throws {
        var raft = Etcdserverpb_InternalRaftRequest()
        var checkpoint = Etcdserverpb_LeaseCheckpoint()
        checkpoint.id = id
        checkpoint.remainingTtl = remaining
        raft.leaseCheckpoint.checkpoints = [checkpoint]
        _ = try apply(raft)
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64) throws -> Etcdserverpb_PutResponse {
        var request = putRequest(key, value)
        request.lease = lease
        return try put(request)
    }
}

@Suite("Lease entries applied by the replica")
struct LeaseApplyTests {
    @Test("grant answers the ID, the TTL raised to the minimum and the unchanged revision; errors are etcd's")
    func grant() throws {
        let replica = try TestReplica()
        try replica.put("a", "1")
        let response = try replica.grant(0x77, ttl: 1)
        #expect(response.id == 0x77)
        #expect(response.ttl == 2)
        #expect(response.header.revision == 2)
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.leaseGrant.id = 0x77
        raft.leaseGrant.ttl = 60
        #expect(throws: ReplicaError.request(.leaseExists)) { try replica.apply(raft) }
        raft.leaseGrant.id = 0x78
        raft.leaseGrant.ttl = Lessor.maxTTLSeconds + 1
        #expect(throws: ReplicaError.request(.leaseTTLTooLarge)) { try replica.apply(raft) }
        #expect(throws: ReplicaError.request(.leaseNotFound)) { try replica.revoke(0x78) }
    }

    @Test("revoke deletes every attached key in one revision, in key order, and only those keys")
    func revokeIsAtomic() throws {
        let replica = try TestReplica()
        try replica.grant(1, ttl: 60)
        try replica.grant(2, ttl: 60)
        try replica.put("c", "v", lease: 1)
        try replica.put("a", "v", lease: 1)
        try replica.put("b", "v", lease: 2)
        try replica.put("d", "v")
        replica.store.recordsChanges = true
        let response = try replica.revoke(1)
        #expect(response.header.revision == 6)
        let changes = replica.store.takeChanges()
        #expect(changes.count == 1)
        #expect(changes.first?.revision == 6)
        #expect(changes.first?.events.map { String(decoding: $0.kv.key, as: UTF8.self) } == ["a", "c"])
        #expect(changes.first?.events.allSatisfy { $0.kind == .delete } == true)
        #expect(replica.replica.lessor.contains(LeaseID(1)) == false)
        #expect(keys(try replica.range("a", end: "z").kvs) == ["b", "d"])
        // A lease without keys goes without a new revision.
        #expect(try replica.grant(3, ttl: 60).header.revision == 6)
        #expect(try replica.revoke(3).header.revision == 6)
    }

    @Test("a re-put moves a key to another lease, a plain put or a delete takes it off")
    func attachments() throws {
        let replica = try TestReplica()
        try replica.grant(1, ttl: 60)
        try replica.grant(2, ttl: 60)
        try replica.put("k", "v", lease: 1)
        try replica.put("k", "v", lease: 2)
        try replica.revoke(1)
        #expect(try replica.range("k").kvs.first?.lease == 2)
        try replica.put("k", "v")
        try replica.revoke(2)
        #expect(try replica.range("k").kvs.count == 1)
        try replica.grant(3, ttl: 60)
        try replica.put("k", "v", lease: 3)
        var delete = Etcdserverpb_InternalRaftRequest()
        delete.deleteRange.key = data("k")
        _ = try replica.apply(delete)
        try replica.put("k", "again")
        try replica.revoke(3)
        #expect(try replica.range("k").kvs.first.map { String(decoding: $0.value, as: UTF8.self) } == "again")
    }

    @Test("leases, their attached keys and checkpointed remainders survive reopening the backend")
    func restart() throws {
        try withTemporaryDirectory { directory in
            do {
                let replica = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
                try replica.grant(1, ttl: 600)
                try replica.grant(2, ttl: 30)
                try replica.put("a", "v", lease: 1)
                try replica.put("b", "v", lease: 2)
                try replica.put("b", "v", lease: 1)
                try replica.put("c", "v", lease: 2)
                try replica.checkpoint(1, remaining: 123)
                try replica.revoke(2)
                try replica.replica.commitBackend(durably: true)
            }
            let reopened = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
            let lessor = reopened.replica.lessor
            #expect(lessor.count == 1)
            #expect(lessor.persisted(LeaseID(1)) == PersistedLease(id: LeaseID(1), ttl: 600, remainingTTL: 123))
            #expect(lessor.attachedKeys(LeaseID(1)) == [Array("a".utf8), Array("b".utf8)])
            // Promotion starts from the checkpointed remainder.
            lessor.promote(now: .zero, extend: .seconds(1))
            #expect(lessor.status(LeaseID(1), now: .zero, includeKeys: false)?.remainingSeconds == 124)
            try reopened.revoke(1)
            #expect(try reopened.range("a", end: "z").kvs.isEmpty)
        }
    }

}
