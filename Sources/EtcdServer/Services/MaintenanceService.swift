import EtcdMVCC
import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdRaft
import EtcdReplica
import GRPCCore
import GRPCProtobuf
import Logging

/// etcd's Maintenance service: Status (what `etcdctl endpoint status` shows), alarms, Hash and
/// HashKV, and leadership transfer.
struct MaintenanceService: RegistrableRPCService {
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let statusBoard: MemberStatusBoard
    /// Where a leadership transfer is asked for.
    let mailbox: RaftMailbox
    /// How long MoveLeader waits for the transferee to lead.
    let requestTimeout: Duration
    /// Where alarm requests go: every Alarm call is a Raft entry, as in etcd.
    let proposer: RequestProposer
    /// Runs one defragmentation step between applies; returns the free pages left.
    let defragmentStep: @Sendable (_ pages: Int) async throws -> Int64
    /// Commits the backend's open batch now (see `EntryApplier.commitNow`).
    let commitBackend: @Sendable () async throws -> Void
    let snapshots: SnapshotStreamer
    let logger: Logger
    /// With auth on: admins only, but for Status (any user) and listing alarms (any user).
    let authenticator: Authenticator

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerUnary(Etcdserverpb_Maintenance.Method.MoveLeader.descriptor) {
            (request: Etcdserverpb_MoveLeaderRequest, _) in try await moveLeader(request)
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.Status.descriptor) {
            (request: Etcdserverpb_StatusRequest, _) in try await status()
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.Alarm.descriptor) {
            (request: Etcdserverpb_AlarmRequest, _) in try await alarm(request)
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.HashKV.descriptor) {
            (request: Etcdserverpb_HashKVRequest, _) in try await hashKV(request)
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.Defragment.descriptor) {
            (_: Etcdserverpb_DefragmentRequest, _) in try await defragment()
        }
        router.registerHandler(
            forMethod: Etcdserverpb_Maintenance.Method.Snapshot.descriptor,
            deserializer: ProtobufDeserializer<Etcdserverpb_SnapshotRequest>(),
            serializer: ProtobufSerializer<Etcdserverpb_SnapshotResponse>()
        ) { request, context in
            StreamingServerResponse { writer in
                try await snapshot(request: request.messages, response: writer, context: context)
                return [:]
            }
        }
        router.registerUnary(Etcdserverpb_Maintenance.Method.Hash.descriptor) {
            (request: Etcdserverpb_HashRequest, _) in try await hash()
        }
    }

    /// etcd's Snapshot (see ``SnapshotStreamer``); the request carries nothing.
    func snapshot(
        request: RPCAsyncSequence<Etcdserverpb_SnapshotRequest, any Error>,
        response: RPCWriter<Etcdserverpb_SnapshotResponse>,
        context: ServerContext
    ) async throws {
        try await authenticator.requireAdminForMaintenance()
        logger.info("sending database snapshot to client")
        // The copy reads what the backend has committed: everything applied goes in, as etcd's.
        try await commitBackend()
        try await snapshots.stream(to: response)
        logger.info("sent database snapshot to client")
    }

    /// Pages handed back per step: about 2 ms of work, so a read or an apply waits at most that
    /// long for a step, where etcd's defragmentation holds every write for the whole copy.
    static let defragmentPagesPerStep = 128

    /// etcd's Defragment, in place and in small steps: free pages are moved to the end of the
    /// database file and cut off, a step at a time between applies, until none are left (or as
    /// many steps as there were free pages at the start have run, so that a steady stream of
    /// deletions cannot keep it going forever). Local to this member, as in etcd. The response
    /// carries no header, as etcd's.
    func defragment() async throws -> Etcdserverpb_DefragmentResponse {
        try await authenticator.requireAdminForMaintenance()
        let started = ContinuousClock.now
        let sizeBefore = statusBoard.databaseSize
        logger.info("defragmenting", metadata: ["current-db-size-bytes": "\(sizeBefore)"])
        var left = try await defragmentStep(Self.defragmentPagesPerStep)
        var stepsLeft = left / Int64(Self.defragmentPagesPerStep) + 1
        while left > 0, stepsLeft > 0 {
            // Room for the requests queued behind the step.
            try await Task.sleep(for: .milliseconds(1))
            left = try await defragmentStep(Self.defragmentPagesPerStep)
            stepsLeft -= 1
        }
        try await commitBackend()
        logger.info(
            "finished defragmenting",
            metadata: [
                "current-db-size-bytes-diff": "\(statusBoard.databaseSize - sizeBefore)",
                "current-db-size-bytes": "\(statusBoard.databaseSize)",
                "took": "\(started.duration(to: .now))",
            ])
        return Etcdserverpb_DefragmentResponse()
    }

    /// etcd's HashKV: a CRC-32C of the MVCC history up to a revision, equal on members (and Go
    /// etcd servers) that saw the same history; see ``MVCCStore/hashKV(revision:)``.
    func hashKV(_ request: Etcdserverpb_HashKVRequest) async throws -> Etcdserverpb_HashKVResponse {
        try await authenticator.requireAdminForMaintenance()
        let result = try await replica.hashKV(revision: request.revision)
        var response = Etcdserverpb_HashKVResponse()
        response.hash = result.hash
        response.compactRevision = result.compactRevision
        response.hashRevision = result.hashRevision
        response.header.revision = result.revision
        header.fill(&response.header)
        return response
    }

    /// etcd's Hash: a checksum of the member's whole keyspace history, compactions or not. Go
    /// etcd hashes its bbolt file's every bucket, which no other storage can reproduce, so this
    /// hashes the MVCC rows (as HashKV at the current revision would with nothing compacted);
    /// like etcd's, it is only comparable between members of one implementation.
    func hash() async throws -> Etcdserverpb_HashResponse {
        try await authenticator.requireAdminForMaintenance()
        let result = try await replica.hashAllRows()
        var response = Etcdserverpb_HashResponse()
        response.hash = result.hash
        response.header.revision = result.revision
        header.fill(&response.header)
        return response
    }

    func status() async throws -> Etcdserverpb_StatusResponse {
        _ = try await authenticator.requireUser()
        return try replica.read { (replica) throws(ReplicaError) in
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
            // As etcd: a missing leader, then each raised alarm in protobuf's compact text form.
            if response.leader == 0 { response.errors.append(EtcdError.noLeader.message) }
            response.errors += replica.alarms.map(Self.compactText)
            response.header.revision = replica.store.currentRevision
            header.fill(&response.header)
            return response
        }
    }

    /// Hands leadership to another voter (etcd's MoveLeader): only the leader may, and it
    /// answers once the transferee leads, or "leader transfer took too long" after the request
    /// timeout.
    func moveLeader(_ request: Etcdserverpb_MoveLeaderRequest) async throws -> Etcdserverpb_MoveLeaderResponse {
        try await authenticator.requireAdmin()
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

    /// etcd's Alarm: lists, raises or clears alarms. Every action is a Raft entry (a listing
    /// too, so it is linearizable as in etcd); an action outside the protocol's three answers
    /// with nothing, as etcd's applier does.
    func alarm(_ request: Etcdserverpb_AlarmRequest) async throws -> Etcdserverpb_AlarmResponse {
        // Any user may list the alarms; raising or clearing one is an admin's (etcd 3.5.29 on).
        if request.action == .get {
            _ = try await authenticator.requireUser()
        } else {
            try await authenticator.requireAdmin()
        }
        var response = Etcdserverpb_AlarmResponse()
        if case .UNRECOGNIZED = request.action {
            header.fill(&response.header)
            return response
        }
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.alarm = request
        guard case .alarm(let applied) = try await proposer.propose(entry) else {
            preconditionFailure("an alarm request was answered with another kind of response")
        }
        response = applied
        header.fill(&response.header)
        return response
    }

    /// An alarm as Go's protobuf prints it in compact text (what etcd's Status lists in
    /// `errors`): "memberID:<decimal> alarm:<NAME> ".
    static func compactText(_ alarm: Etcdserverpb_AlarmMember) -> String {
        var text = ""
        if alarm.memberID != 0 { text += "memberID:\(alarm.memberID) " }
        if alarm.alarm != .none { text += "alarm:\(alarmName(alarm.alarm)) " }
        return text
    }

    /// The alarm type's name in etcd's enum, or its number when it has none.
    static func alarmName(_ type: Etcdserverpb_AlarmType) -> String {
        switch type {
        case .none: return "NONE"
        case .nospace: return "NOSPACE"
        case .corrupt: return "CORRUPT"
        case .UNRECOGNIZED(let value): return String(value)
        }
    }
}

/// The versions this server reports: it speaks etcd 3.5's API.
public enum EtcdVersion {
    public static let server = "3.5.17"
    public static let cluster = "3.5.0"
    public static let swiftEtcd = "0.1.0"
}
