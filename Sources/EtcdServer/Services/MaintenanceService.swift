import EtcdMVCC
import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdReplica
import GRPCCore

/// The parts of etcd's Maintenance service that exist so far: Status (what `etcdctl endpoint
/// status` shows) and listing alarms. The rest answer UNIMPLEMENTED until they are built.
struct MaintenanceService: RegistrableRPCService {
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let statusBoard: MemberStatusBoard

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerUnary(Etcdserverpb_Maintenance.Method.Status.descriptor) {
            (request: Etcdserverpb_StatusRequest, _) in try status()
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.Alarm.descriptor) {
            (request: Etcdserverpb_AlarmRequest, _) in try alarm(request)
        }
    }

    func status() throws -> Etcdserverpb_StatusResponse {
        try replica.read { (replica) throws(ReplicaError) in
            var response = Etcdserverpb_StatusResponse()
            do throws(BackendError) {
                response.dbSize = try replica.store.backend.sizeBytes
                response.dbSizeInUse = try replica.store.backend.sizeInUseBytes
            } catch {
                throw ReplicaError(.backend(error))
            }
            response.version = EtcdVersion.server
            response.leader = statusBoard.leader
            response.raftIndex = statusBoard.committedIndex
            response.raftAppliedIndex = statusBoard.appliedIndex
            response.raftTerm = statusBoard.term
            response.header.revision = replica.store.currentRevision
            header.fill(&response.header)
            return response
        }
    }

    /// No alarm can be raised yet (there is no space quota), so the list is always empty; raising
    /// or clearing alarms by hand is not supported yet.
    func alarm(_ request: Etcdserverpb_AlarmRequest) throws -> Etcdserverpb_AlarmResponse {
        guard request.action == .get else {
            throw RPCError(code: .unimplemented, message: "etcdserver: alarm activate/deactivate is not supported yet")
        }
        return try replica.read { (replica) throws(ReplicaError) in
            var response = Etcdserverpb_AlarmResponse()
            response.header.revision = replica.store.currentRevision
            header.fill(&response.header)
            return response
        }
    }
}

/// etcd's Cluster service, as far as it goes yet: listing the members, as the replicated
/// membership holds them (a member's name and client URLs appear once it has published them).
struct ClusterService: RegistrableRPCService {
    let header: ResponseHeaderSource
    let replica: ReplicaHandle

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberList.descriptor) {
            (request: Etcdserverpb_MemberListRequest, _) in try memberList()
        }
    }

    func memberList() throws -> Etcdserverpb_MemberListResponse {
        var response = Etcdserverpb_MemberListResponse()
        response.members = try replica.read { $0.membership.sortedMembers }.map { member in
            var listed = Etcdserverpb_Member()
            listed.id = member.id.rawValue
            listed.name = member.name
            listed.peerUrls = member.peerURLs
            listed.clientUrls = member.clientURLs
            listed.isLearner = member.isLearner
            return listed
        }
        // etcd's Cluster service leaves the revision out of its headers.
        header.fill(&response.header)
        return response
    }
}

/// The versions this server reports: it speaks etcd 3.5's API.
public enum EtcdVersion {
    public static let server = "3.5.17"
    public static let cluster = "3.5.0"
    public static let swiftEtcd = "0.1.0"
}
