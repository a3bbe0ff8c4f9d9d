import EtcdMVCC
import EtcdCommon
import EtcdReplica

extension Replica {
    private static let memberIDMetaKey = "member_id"
    private static let clusterIDMetaKey = "cluster_id"

    /// A member keeps the IDs it was born with: the first start records them with the data, and
    /// later starts use the recorded ones whatever the flags say, as etcd reads them from its WAL.
    func resolveIdentity(_ proposed: MemberIdentity.Resolved) throws -> MemberIdentity.Resolved {
        if let member = try store.meta(Self.memberIDMetaKey), let cluster = try store.meta(Self.clusterIDMetaKey) {
            return MemberIdentity.Resolved(
                member: MemberID(UInt64(bitPattern: member)),
                cluster: ClusterID(UInt64(bitPattern: cluster))
            )
        }
        try store.beginBatch()
        do {
            try store.setMeta(Self.memberIDMetaKey, Int64(bitPattern: proposed.member.rawValue))
            try store.setMeta(Self.clusterIDMetaKey, Int64(bitPattern: proposed.cluster.rawValue))
            try store.commitBatch()
        } catch {
            store.abortBatch()
            throw error
        }
        return proposed
    }

    /// A data directory from before the membership was replicated has none recorded: this
    /// member (the only one such a directory can have) is recorded as the first start of a
    /// new member would have, so that the member list and published attributes have a member.
    func seedMembershipIfMissing(_ member: ClusterMember) throws {
        guard membership.members.isEmpty, appliedIndex > 0 else { return }
        try seedMembership(member)
    }
}
