import EtcdAPI
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// The membership as a running member records it through Raft: a fresh member is at raft index
/// 4 as etcd's (its addition, the leader's empty entry, its published attributes, the cluster
/// version), lists itself from the replicated state, and publishes its attributes again at every
/// start.
@Suite("Membership on a running member")
struct MembershipServerTests {
    private func statusAndMembers(port: Int) async throws -> (Etcdserverpb_StatusResponse, [Etcdserverpb_Member]) {
        try await withKVClient(port: port) { _, client in
            let status = try await Etcdserverpb_Maintenance.Client(wrapping: client).status(Etcdserverpb_StatusRequest())
            let members = try await Etcdserverpb_Cluster.Client(wrapping: client).memberList(Etcdserverpb_MemberListRequest())
            return (status, members.members)
        }
    }

    @Test("a fresh member is at raft index 4 and lists itself with the attributes it published; a restart publishes them again")
    func freshAndRestarted() async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("etcd-membership-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (fresh, members) = try await withServer(dataDirectory: directory, configure: { $0.name = "first" }) { port in
            try await statusAndMembers(port: port)
        }
        #expect(fresh.raftIndex == 4)
        #expect(fresh.raftAppliedIndex == 4)
        let member = try #require(members.first)
        #expect(members.count == 1)
        #expect(member.id == fresh.header.memberID)
        #expect(member.name == "first")
        #expect(member.peerUrls == ["http://localhost:2380"])
        #expect(member.clientUrls == ["http://localhost:2379"])
        #expect(!member.isLearner)

        // A restart under another name: the new term's empty entry, then the attributes
        // published again (as etcd does at every start); the cluster version is already there.
        let (restarted, again) = try await withServer(dataDirectory: directory, configure: { $0.name = "renamed" }) { port in
            try await statusAndMembers(port: port)
        }
        #expect(restarted.raftIndex == 6)
        #expect(again.map(\.name) == ["renamed"])
        #expect(again.first?.id == member.id)
    }
}
