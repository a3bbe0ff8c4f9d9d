import EtcdAPI
import EtcdCommon
import EtcdRaft
import EtcdReplica
import Foundation
import GRPCCore

/// etcd's Cluster service: the member list as the replicated membership holds it, and membership
/// changes proposed through Raft with etcd's checks and errors. A change is answered once it is
/// applied on this member.
struct ClusterService: RegistrableRPCService {
    let header: ResponseHeaderSource
    let replica: ReplicaHandle
    let proposer: RequestProposer
    let status: MemberStatusBoard
    /// Since when this member's connection to a peer has been up (nil: down).
    let activeSince: @Sendable (MemberID) -> ContinuousClock.Instant?
    let forwarder: LeaderForwarder
    /// `--strict-reconfig-check`: refuse changes that could cost the cluster its quorum.
    let strictReconfigCheck: Bool
    /// With auth on: changes are an admin's, the list any user's.
    let authenticator: Authenticator

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberList.descriptor) {
            (request: Etcdserverpb_MemberListRequest, _) in try await memberList(request)
        }
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberAdd.descriptor) {
            (request: Etcdserverpb_MemberAddRequest, _) in try await memberAdd(request)
        }
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberRemove.descriptor) {
            (request: Etcdserverpb_MemberRemoveRequest, _) in try await memberRemove(request)
        }
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberUpdate.descriptor) {
            (request: Etcdserverpb_MemberUpdateRequest, _) in try await memberUpdate(request)
        }
        router.registerUnary(Etcdserverpb_Cluster.Method.MemberPromote.descriptor) {
            (request: Etcdserverpb_MemberPromoteRequest, _) in try await memberPromote(request)
        }
    }

    func memberList(_ request: Etcdserverpb_MemberListRequest) async throws -> Etcdserverpb_MemberListResponse {
        _ = try await authenticator.requireUser()
        // etcd 3.5's `linearizable` option: the list as of a read barrier, not this member's view.
        if request.linearizable { try await proposer.waitForLinearizableRead() }
        var response = Etcdserverpb_MemberListResponse()
        response.members = try replica.read { $0.membership.sortedMembers }.map(Self.listed)
        // etcd's Cluster service leaves the revision out of its headers.
        header.fill(&response.header)
        return response
    }

    func memberAdd(_ request: Etcdserverpb_MemberAddRequest) async throws -> Etcdserverpb_MemberAddResponse {
        try await authenticator.requireAdmin()
        let peerURLs = try Self.validatedURLs(request.peerUrls)
        let membership = try replica.read { $0.membership }
        if strictReconfigCheck {
            if !membership.isReadyToAdd(learner: request.isLearner) { throw EtcdError.memberNotEnoughStarted }
            // etcd also wants this member connected to every voter for a while (learner or not).
            if !allVotersConnected(membership) { throw EtcdError.unhealthy }
        }
        // etcd names an added member by its peer URLs and the time (so that a member removed and
        // added again with the same URLs gets a new ID).
        let seconds = Int64(Date().timeIntervalSince1970)
        let id = MemberIdentity.memberID(peerURLs: peerURLs, clusterToken: "\(seconds)")
        let member = ClusterMember(id: id, peerURLs: peerURLs, isLearner: request.isLearner)
        try membership.validate(.add(member))
        let after = try await proposer.proposeMembershipChange(
            kind: request.isLearner ? .addLearnerNode : .addNode, member: member)
        var response = Etcdserverpb_MemberAddResponse()
        response.member = Self.listed(member)
        response.members = after.sortedMembers.map(Self.listed)
        header.fill(&response.header)
        return response
    }

    func memberRemove(_ request: Etcdserverpb_MemberRemoveRequest) async throws -> Etcdserverpb_MemberRemoveResponse {
        try await authenticator.requireAdmin()
        let id = MemberID(request.id)
        let membership = try replica.read { $0.membership }
        try membership.validate(.remove(id))
        if strictReconfigCheck {
            if !membership.isReadyToRemove(id) { throw EtcdError.memberNotEnoughStarted }
            // A member this one is not connected to is not part of the active quorum.
            let neverConnected = id != header.memberID && activeSince(id) == nil
            if !membership.keepsActiveQuorum(removing: id, connected: connectedVoters(), neverConnected: neverConnected) {
                throw EtcdError.unhealthy
            }
        }
        let member = membership.members[id] ?? ClusterMember(id: id, peerURLs: [])
        let after = try await proposer.proposeMembershipChange(kind: .removeNode, member: member)
        var response = Etcdserverpb_MemberRemoveResponse()
        response.members = after.sortedMembers.map(Self.listed)
        header.fill(&response.header)
        return response
    }

    func memberUpdate(_ request: Etcdserverpb_MemberUpdateRequest) async throws -> Etcdserverpb_MemberUpdateResponse {
        try await authenticator.requireAdmin()
        let peerURLs = try Self.validatedURLs(request.peerUrls)
        let id = MemberID(request.id)
        let membership = try replica.read { $0.membership }
        try membership.validate(.update(id, peerURLs: peerURLs))
        var member = membership.members[id] ?? ClusterMember(id: id, peerURLs: [])
        member.peerURLs = peerURLs
        let after = try await proposer.proposeMembershipChange(kind: .updateNode, member: member)
        var response = Etcdserverpb_MemberUpdateResponse()
        response.members = after.sortedMembers.map(Self.listed)
        header.fill(&response.header)
        return response
    }

    func memberPromote(_ request: Etcdserverpb_MemberPromoteRequest) async throws -> Etcdserverpb_MemberPromoteResponse {
        try await authenticator.requireAdmin()
        let id = MemberID(request.id)
        let membership = try replica.read { $0.membership }
        try membership.validate(.promote(id))
        if strictReconfigCheck && !membership.isReadyToPromote(id) { throw EtcdError.memberNotEnoughStarted }
        // Only the leader knows how far the learner has come: elsewhere the request goes to it.
        guard case .here = try forwarder.leader() else {
            guard case .remote(let client) = try forwarder.leader() else { throw EtcdError.noLeader }
            var response = try await forwarder.promote(request, on: client)
            header.fill(&response.header)
            return response
        }
        let match = status.matchIndexes
        try ClusterMembership.checkLearnerReady(
            learnerMatch: match[id.rawValue] ?? 0, leaderMatch: match[header.memberID.rawValue] ?? 0)
        guard var member = membership.members[id] else { throw EtcdError.memberNotFound }
        member.isLearner = false
        let after = try await proposer.proposeMembershipChange(kind: .addNode, member: member, isPromote: true)
        var response = Etcdserverpb_MemberPromoteResponse()
        response.members = after.sortedMembers.map(Self.listed)
        header.fill(&response.header)
        return response
    }

    /// etcd's `HealthInterval`: a peer counts as connected once its connection has been up
    /// this long.
    static let healthInterval: Duration = .seconds(5)

    /// The members connected for at least the health interval (etcd's `numConnectedSince`), this
    /// member included.
    private func connectedVoters() -> Set<MemberID> {
        let cutoff = ContinuousClock.now - Self.healthInterval
        let members = (try? replica.read { $0.membership.sortedMembers.map(\.id) }) ?? []
        var connected: Set<MemberID> = [header.memberID]
        for id in members where id != header.memberID {
            if let since = activeSince(id), since <= cutoff { connected.insert(id) }
        }
        return connected
    }

    private func allVotersConnected(_ membership: ClusterMembership) -> Bool {
        let connected = connectedVoters()
        return membership.votingMembers.allSatisfy { connected.contains($0.id) }
    }

    /// etcd accepts a member's URLs only as absolute http(s) URLs with a host and port.
    static func validatedURLs(_ urls: [String]) throws -> [String] {
        guard !urls.isEmpty else { throw EtcdError.memberBadURLs }
        return try urls.map { text in
            guard let url = try? EndpointURL(parsing: text) else { throw EtcdError.memberBadURLs }
            return url.description
        }
    }

    static func listed(_ member: ClusterMember) -> Etcdserverpb_Member {
        var listed = Etcdserverpb_Member()
        listed.id = member.id.rawValue
        listed.name = member.name
        listed.peerUrls = member.peerURLs
        listed.clientUrls = member.clientURLs
        listed.isLearner = member.isLearner
        return listed
    }
}
