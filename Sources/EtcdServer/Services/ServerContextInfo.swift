import EtcdAPI
import EtcdCommon

/// What every response header says about where it came from.
struct ResponseHeaderSource: Sendable {
    var clusterID: ClusterID
    var memberID: MemberID
    /// Where the current Raft term comes from.
    var status: MemberStatusBoard

    /// Fills in cluster, member and term; the revision is the applier's (or, where etcd does so,
    /// the current one).
    func fill(_ header: inout Etcdserverpb_ResponseHeader) {
        header.clusterID = clusterID.rawValue
        header.memberID = memberID.rawValue
        header.raftTerm = status.term
    }
}
