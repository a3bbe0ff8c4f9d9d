import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

/// etcd's membership rules (its `ValidateConfigurationChange` and `IsReadyTo...` checks), as
/// every member applies them, with the errors etcd's v3 RPCs answer.
@Suite("Cluster membership")
struct ClusterMembershipTests {
    private func member(_ id: UInt64, _ name: String = "", learner: Bool = false) -> ClusterMember {
        ClusterMember(
            id: MemberID(id), name: name, peerURLs: ["http://10.0.0.\(id):2380"],
            clientURLs: name.isEmpty ? [] : ["http://10.0.0.\(id):2379"], isLearner: learner)
    }

    private func threeStarted() -> ClusterMembership {
        ClusterMembership(members: [member(1, "a"), member(2, "b"), member(3, "c")])
    }

    @Test("add, update, promote and remove, each refused with etcd's error when it does not apply")
    func validation() throws {
        var cluster = threeStarted()
        #expect(throws: EtcdError.memberExists) { try cluster.validate(.add(member(2))) }
        var clash = member(9)
        clash.peerURLs = ["http://10.0.0.1:2380"]
        #expect(throws: EtcdError.peerURLExists) { try cluster.validate(.add(clash)) }
        #expect(throws: EtcdError.memberNotFound) { try cluster.validate(.remove(MemberID(9))) }
        #expect(throws: EtcdError.memberNotFound) { try cluster.validate(.update(MemberID(9), peerURLs: ["http://x:1"])) }
        #expect(throws: EtcdError.peerURLExists) {
            try cluster.validate(.update(MemberID(1), peerURLs: ["http://10.0.0.2:2380"]))
        }
        // A member may keep its own URLs in an update.
        try cluster.validate(.update(MemberID(1), peerURLs: ["http://10.0.0.1:2380", "http://10.1.0.1:2380"]))
        #expect(throws: EtcdError.memberNotLearner) { try cluster.validate(.promote(MemberID(1))) }
        #expect(throws: EtcdError.memberNotFound) { try cluster.validate(.promote(MemberID(9))) }

        try cluster.apply(.add(member(4, learner: true)))
        #expect(throws: EtcdError.tooManyLearners) { try cluster.validate(.add(member(5, learner: true))) }
        #expect(EtcdError.tooManyLearners.message == "etcdserver: too many learner members in cluster")
        try cluster.apply(.promote(MemberID(4)))
        #expect(cluster.members[MemberID(4)]?.isLearner == false)
        try cluster.apply(.remove(MemberID(4)))
        #expect(cluster.members[MemberID(4)] == nil)
        // A removed ID never comes back, whatever is asked of it.
        for change: MembershipChange in [.add(member(4)), .remove(MemberID(4)), .promote(MemberID(4))] {
            #expect(throws: EtcdError.memberNotFound) { try cluster.validate(change) }
        }
        try cluster.apply(.update(MemberID(1), peerURLs: ["http://10.1.0.1:2380"]))
        #expect(cluster.members[MemberID(1)]?.peerURLs == ["http://10.1.0.1:2380"])
        #expect(cluster.sortedMembers.map(\.id.rawValue) == [1, 2, 3])
    }

    @Test("a member counts as started once it publishes its name; attributes of a removed member are ignored")
    func attributes() throws {
        var cluster = ClusterMembership(members: [member(1, "a")])
        try cluster.apply(.add(member(2)))
        #expect(cluster.members[MemberID(2)]?.isStarted == false)
        cluster.publishAttributes(of: MemberID(2), name: "b", clientURLs: ["http://10.0.0.2:2379"])
        #expect(cluster.members[MemberID(2)]?.isStarted == true)
        #expect(cluster.members[MemberID(2)]?.clientURLs == ["http://10.0.0.2:2379"])
        cluster.publishAttributes(of: MemberID(7), name: "ghost", clientURLs: [])
        #expect(cluster.members[MemberID(7)] == nil)
    }

    @Test("strict reconfiguration keeps a quorum of started voters, as etcd's IsReadyTo checks")
    func strictReconfiguration() throws {
        // One started member may always add a second (restoring a cluster from one member).
        #expect(ClusterMembership(members: [member(1, "a")]).isReadyToAdd(learner: false))
        // Three voters, one of them not started: adding a fourth needs 3 started of 4.
        var cluster = ClusterMembership(members: [member(1, "a"), member(2, "b"), member(3)])
        #expect(!cluster.isReadyToAdd(learner: false))
        #expect(cluster.isReadyToAdd(learner: true))
        cluster.publishAttributes(of: MemberID(3), name: "c", clientURLs: [])
        #expect(cluster.isReadyToAdd(learner: false))
        // Removing a started voter from {a, b, c (not started)} leaves 1 started of 2: refused.
        cluster = ClusterMembership(members: [member(1, "a"), member(2, "b"), member(3)])
        #expect(!cluster.isReadyToRemove(MemberID(1)))
        #expect(cluster.isReadyToRemove(MemberID(3)))
        // Promoting counts the learner as a started voter.
        cluster = ClusterMembership(members: [member(1, "a"), member(2), member(3, learner: true)])
        #expect(cluster.isReadyToPromote(MemberID(3)))
        cluster = ClusterMembership(members: [member(1, "a"), member(2), member(4), member(3, learner: true)])
        #expect(!cluster.isReadyToPromote(MemberID(3)))
        // Active quorum on removal: of five voters, removing one needs 3 others connected.
        cluster = ClusterMembership(members: (1...5).map { member(UInt64($0), "m\($0)") })
        let connected: Set<MemberID> = [MemberID(1), MemberID(2), MemberID(3), MemberID(4)]
        #expect(cluster.keepsActiveQuorum(removing: MemberID(4), connected: connected, neverConnected: false))
        #expect(!cluster.keepsActiveQuorum(removing: MemberID(4), connected: [MemberID(1), MemberID(2), MemberID(4)], neverConnected: false))
        #expect(cluster.keepsActiveQuorum(removing: MemberID(5), connected: [MemberID(1)], neverConnected: true))
    }

    @Test("a learner is ready to promote at 90% of the leader's log, as etcd's readyPercent")
    func learnerReadiness() throws {
        try ClusterMembership.checkLearnerReady(learnerMatch: 90, leaderMatch: 100)
        #expect(throws: EtcdError.learnerNotReady) { try ClusterMembership.checkLearnerReady(learnerMatch: 89, leaderMatch: 100) }
        try ClusterMembership.checkLearnerReady(learnerMatch: 0, leaderMatch: 0)
    }

    @Test("the membership survives in the backend, removed IDs included; a damaged row is an error, not a skip")
    func persistence() throws {
        try withTemporaryDirectory { directory in
            var cluster = threeStarted()
            try cluster.apply(.add(ClusterMember(id: MemberID(.max), peerURLs: ["http://[::1]:2380"], isLearner: true)))
            try cluster.apply(.remove(MemberID(2)))
            do {
                let table = try MembershipTable(backend: Backend(dataDirectory: directory))
                try table.backend.begin()
                try table.save(cluster)
                try table.backend.commit()
            }
            let table = try MembershipTable(backend: Backend(dataDirectory: directory))
            let loaded = try table.load()
            #expect(loaded == cluster)
            #expect(loaded.removed == [MemberID(2)])
            try table.backend.execute("UPDATE members SET member = x'7b7d' WHERE id = 1")
            #expect(throws: BackendError.self) { try table.load() }
        }
    }
}

/// Membership entries as the replica applies them from the log.
@Suite("Membership entries applied by the replica")
struct MembershipApplyTests {
    private func confChange(_ kind: ConfChange.Kind, _ id: UInt64, context: MembershipChangeContext?, index: UInt64) -> Entry {
        let change = ConfChange(kind: kind, nodeID: NodeID(id), context: context?.encoded() ?? [])
        return Entry(term: 2, index: index, type: .confChange, data: change.encoded())
    }

    private func member(_ id: UInt64) -> ClusterMember {
        ClusterMember(id: MemberID(id), peerURLs: ["http://10.0.0.\(id):2380"])
    }

    @Test("adds, promotions and removals change the membership; one it refuses is reported for Raft to skip; all of it survives a restart")
    func apply() throws {
        try withTemporaryDirectory { directory in
            do {
                let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
                _ = try replica.apply([
                    confChange(.addNode, 1, context: MembershipChangeContext(member: member(1)), index: 1),
                    confChange(.addLearnerNode, 2, context: MembershipChangeContext(member: member(2)), index: 2),
                    // The same ID again: refused, and Raft must skip it too.
                    confChange(.addNode, 2, context: MembershipChangeContext(member: member(2)), index: 3),
                    // A description of another member than the entry names: refused.
                    confChange(.addNode, 7, context: MembershipChangeContext(member: member(8)), index: 4),
                ])
                #expect(replica.takeRefusedConfChanges() == [3, 4])
                #expect(replica.membership.members[MemberID(2)]?.isLearner == true)
                _ = try replica.apply([
                    confChange(.addNode, 2, context: MembershipChangeContext(member: member(2), isPromote: true), index: 5),
                    confChange(.removeNode, 1, context: nil, index: 6),
                ])
                #expect(replica.takeRefusedConfChanges().isEmpty)
                var attributes = Etcdserverpb_InternalRaftRequest()
                attributes.clusterMemberAttrSet.memberID = 2
                attributes.clusterMemberAttrSet.memberAttributes.name = "two"
                attributes.clusterMemberAttrSet.memberAttributes.clientUrls = ["http://10.0.0.2:2379"]
                var version = Etcdserverpb_InternalRaftRequest()
                version.clusterVersionSet.ver = "3.5.0"
                _ = try replica.apply([
                    Entry(term: 2, index: 7, data: try attributes.serializedBytes()),
                    Entry(term: 2, index: 8, data: try version.serializedBytes()),
                ])
                try replica.commitBackend(durably: true)
            }
            let reopened = try Replica(store: MVCCStore(backend: Backend(dataDirectory: directory)), logger: Logger(label: "test"))
            #expect(reopened.membership.sortedMembers.map(\.id) == [MemberID(2)])
            #expect(reopened.membership.members[MemberID(2)]?.isLearner == false)
            #expect(reopened.membership.members[MemberID(2)]?.name == "two")
            #expect(reopened.membership.removed == [MemberID(1)])
            #expect(reopened.clusterVersion == "3.5.0")
            #expect(reopened.appliedIndex == 8)
        }
    }
}
