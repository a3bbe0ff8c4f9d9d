public import EtcdCommon

/// One member of the cluster as etcd records it: raft attributes (ID, peer URLs, learner or
/// voter), changed only through membership changes, and attributes (name, client URLs) that the
/// member publishes through Raft once it has started.
public struct ClusterMember: Sendable, Hashable, Codable {
    public var id: MemberID
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: MemberID, name: String = "", peerURLs: [String], clientURLs: [String] = [], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }

    /// etcd's `IsStarted`: a member counts as started once it has published its name.
    public var isStarted: Bool { !name.isEmpty }
}

extension MemberID: Codable {
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(UInt64.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A change to the cluster's membership, as a client asks for it (etcd's MemberAdd,
/// MemberRemove, MemberUpdate, MemberPromote).
public enum MembershipChange: Sendable, Hashable {
    case add(ClusterMember)
    case remove(MemberID)
    case update(MemberID, peerURLs: [String])
    case promote(MemberID)
}

/// The cluster's members, as every member holds them: replicated state, changed only by applied
/// membership entries, with etcd's validation (its `ValidateConfigurationChange`) and its
/// strict-reconfiguration checks (`--strict-reconfig-check`, its `IsReadyTo...`).
///
/// Pure and deterministic: the server hands in whatever it learns at run time (which members
/// are connected, a learner's progress), so every rule is a unit test.
public struct ClusterMembership: Sendable, Hashable {
    /// etcd's default `--experimental-max-learners`.
    public static let defaultMaxLearners = 1
    /// A learner may be promoted once its log matches at least this share of the leader's
    /// (etcd's `readyPercent`).
    public static let learnerReadyShare = 0.9

    public private(set) var members: [MemberID: ClusterMember] = [:]
    /// Members removed once; their IDs may never come back (etcd's `members_removed`).
    public private(set) var removed: Set<MemberID> = []
    public var maxLearners: Int

    public init(members: [ClusterMember] = [], removed: Set<MemberID> = [], maxLearners: Int = Self.defaultMaxLearners) {
        for member in members { self.members[member.id] = member }
        self.removed = removed
        self.maxLearners = maxLearners
    }

    /// Every member, by ID (the order etcd lists them in).
    public var sortedMembers: [ClusterMember] { members.values.sorted { $0.id < $1.id } }

    public var votingMembers: [ClusterMember] { sortedMembers.filter { !$0.isLearner } }

    // MARK: Validation (etcd's ValidateConfigurationChange, with its errors as v3rpc maps them)

    /// Whether `change` may be applied to the membership as it is now.
    public func validate(_ change: MembershipChange) throws(EtcdError) {
        switch change {
        case .add(let member):
            if removed.contains(member.id) { throw .memberNotFound }
            if members[member.id] != nil { throw .memberExists }
            let taken = Set(members.values.flatMap(\.peerURLs))
            if member.peerURLs.contains(where: taken.contains) { throw .peerURLExists }
            if member.isLearner && members.values.filter(\.isLearner).count + 1 > maxLearners {
                throw .tooManyLearners
            }
        case .remove(let id):
            if removed.contains(id) || members[id] == nil { throw .memberNotFound }
        case .update(let id, let peerURLs):
            if removed.contains(id) || members[id] == nil { throw .memberNotFound }
            let taken = Set(members.values.filter { $0.id != id }.flatMap(\.peerURLs))
            if peerURLs.contains(where: taken.contains) { throw .peerURLExists }
        case .promote(let id):
            guard !removed.contains(id), let member = members[id] else { throw .memberNotFound }
            if !member.isLearner { throw .memberNotLearner }
        }
    }

    /// Validates and applies `change`: the same outcome on every member, since all apply the same
    /// entries to the same membership.
    public mutating func apply(_ change: MembershipChange) throws(EtcdError) {
        try validate(change)
        switch change {
        case .add(let member):
            members[member.id] = member
        case .remove(let id):
            members[id] = nil
            removed.insert(id)
        case .update(let id, let peerURLs):
            members[id]?.peerURLs = peerURLs
        case .promote(let id):
            members[id]?.isLearner = false
        }
    }

    /// A started member's name and client URLs, published through Raft (etcd's attribute
    /// update). Ignored for a member that is gone, as etcd ignores it.
    public mutating func publishAttributes(of id: MemberID, name: String, clientURLs: [String]) {
        guard members[id] != nil else { return }
        members[id]?.name = name
        members[id]?.clientURLs = clientURLs
    }

    // MARK: Strict reconfiguration (--strict-reconfig-check)

    /// Adding a voter keeps a quorum of started voters (etcd's `IsReadyToAddVotingMember`).
    /// A learner never changes the quorum. A one-member cluster may always grow to two (etcd's
    /// exception for restoring a cluster from one member's data).
    public func isReadyToAdd(learner: Bool) -> Bool {
        if learner { return true }
        let voters = votingMembers
        let total = voters.count + 1
        let started = voters.filter(\.isStarted).count
        if started == 1 && total == 2 { return true }
        return started >= total / 2 + 1
    }

    /// Removing `id` leaves a quorum of started voters among the rest (etcd's
    /// `IsReadyToRemoveVotingMember`); removing a learner is always fine.
    public func isReadyToRemove(_ id: MemberID) -> Bool {
        if members[id]?.isLearner == true { return true }
        let others = votingMembers.filter { $0.id != id }
        return others.filter(\.isStarted).count >= others.count / 2 + 1
    }

    /// Promoting learner `id` keeps a quorum of started voters, counting the learner as a
    /// started voter (etcd's `IsReadyToPromoteMember`).
    public func isReadyToPromote(_ id: MemberID) -> Bool {
        let voters = votingMembers
        let total = voters.count + 1
        let started = voters.filter(\.isStarted).count + 1
        return started >= total / 2 + 1
    }

    /// Removing a voter while some voters are unreachable must not break the active quorum
    /// (etcd's check in `mayRemoveMember`): `connected` are the voters this member has been
    /// connected to recently, itself included. A voter that has never been connected is safe to
    /// remove.
    public func keepsActiveQuorum(removing id: MemberID, connected: Set<MemberID>, neverConnected: Bool) -> Bool {
        if members[id]?.isLearner == true || neverConnected { return true }
        let voters = votingMembers
        let active = voters.filter { connected.contains($0.id) }.count
        return active - 1 >= 1 + (voters.count - 1) / 2
    }

    /// A learner may be promoted once its log has caught up with 90% of the leader's (etcd's
    /// `isLearnerReady`); errors as etcd's.
    public static func checkLearnerReady(learnerMatch: UInt64, leaderMatch: UInt64) throws(EtcdError) {
        if Double(learnerMatch) < Double(leaderMatch) * learnerReadyShare { throw .learnerNotReady }
    }
}
