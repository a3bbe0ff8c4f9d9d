import EtcdMVCC
import EtcdCommon
import EtcdReplica

extension Replica {
    private static let memberIDMetaKey = "member_id"
    private static let clusterIDMetaKey = "cluster_id"
    /// The meta values that hold the member's identity (a restored snapshot forgets them).
    static let identityMetaKeys = [memberIDMetaKey, clusterIDMetaKey]

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
        } catch {
            store.abortBatch()
            throw error
        }
        // A failed commit has rolled the batch back itself (aborting it again would trap).
        try store.commitBatch()
        return proposed
    }

    /// The IDs recorded with the data, or nil before the first start recorded them.
    func recordedIdentity() throws -> MemberIdentity.Resolved? {
        guard let member = try store.meta(Self.memberIDMetaKey), let cluster = try store.meta(Self.clusterIDMetaKey) else {
            return nil
        }
        return MemberIdentity.Resolved(member: MemberID(UInt64(bitPattern: member)), cluster: ClusterID(UInt64(bitPattern: cluster)))
    }

    /// Records `identity` over whatever the data holds, durably, in a batch of its own: a
    /// snapshot image arrives with the leader's IDs, and the member installing it must keep its
    /// own (etcd keeps a member's ID in its WAL metadata, outside the snapshot).
    func recordIdentity(_ identity: MemberIdentity.Resolved) throws {
        try store.beginBatch()
        do {
            try store.setMeta(Self.memberIDMetaKey, Int64(bitPattern: identity.member.rawValue))
            try store.setMeta(Self.clusterIDMetaKey, Int64(bitPattern: identity.cluster.rawValue))
        } catch {
            store.abortBatch()
            throw error
        }
        // A failed commit has rolled the batch back itself (aborting it again would trap).
        try store.commitBatch(durably: true)
    }

    /// A data directory from before the membership was replicated has none recorded: this
    /// member (the only one such a directory can have) is recorded as the first start of a
    /// new member would have, so that the member list and published attributes have a member.
    func seedMembershipIfMissing(_ member: ClusterMember) throws {
        guard membership.members.isEmpty, appliedIndex > 0 else { return }
        try seedMembership(member)
    }
}
