import EtcdMVCC
import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdRaft
import EtcdReplica
import GRPCCore

/// The parts of etcd's Maintenance service that exist so far: Status (what `etcdctl endpoint
/// status` shows) and listing alarms. The rest answer UNIMPLEMENTED until they are built.
struct MaintenanceService: RegistrableRPCService {
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let statusBoard: MemberStatusBoard
    /// Where a leadership transfer is asked for.
    let mailbox: RaftMailbox
    /// How long MoveLeader waits for the transferee to lead.
    let requestTimeout: Duration

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerUnary(Etcdserverpb_Maintenance.Method.MoveLeader.descriptor) {
            (request: Etcdserverpb_MoveLeaderRequest, _) in try await moveLeader(request)
        }
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
            response.isLearner = statusBoard.isLearner
            response.header.revision = replica.store.currentRevision
            header.fill(&response.header)
            return response
        }
    }

    /// Hands leadership to another voter (etcd's MoveLeader): only the leader may, and it
    /// answers once the transferee leads, or "leader transfer took too long" after the request
    /// timeout.
    func moveLeader(_ request: Etcdserverpb_MoveLeaderRequest) async throws -> Etcdserverpb_MoveLeaderResponse {
        let local = header.memberID.rawValue
        guard statusBoard.leader == local else { throw EtcdError.notLeader }
        let transferee = MemberID(request.targetID)
        let member = try replica.read { $0.membership.members[transferee] }
        guard let member, !member.isLearner else { throw EtcdError.badLeaderTransferee }
        if request.targetID != local {
            mailbox.deliverFromPeers(.transferLeadership(NodeID(request.targetID)))
            let deadline = ContinuousClock.now.advanced(by: requestTimeout)
            while statusBoard.leader != request.targetID {
                guard ContinuousClock.now < deadline else { throw EtcdError.timeoutLeaderTransfer }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        var response = Etcdserverpb_MoveLeaderResponse()
        header.fill(&response.header)
        return response
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

/// The versions this server reports: it speaks etcd 3.5's API.
public enum EtcdVersion {
    public static let server = "3.5.17"
    public static let cluster = "3.5.0"
    public static let swiftEtcd = "0.1.0"
}
