import EtcdCommon
import EtcdMVCC
import EtcdRaft
import Foundation
import Logging

/// What a membership entry carries beside Raft's own change (etcd's `ConfigChangeContext`): the
/// member as the change describes it, and whether an add of an existing learner is its promotion.
public struct MembershipChangeContext: Sendable, Hashable, Codable {
    public var member: ClusterMember
    public var isPromote: Bool
    /// The proposer's request ID (etcd's ConfChange ID), under which the outcome is reported to
    /// whoever waits for it; nil for the bootstrap entries, which nobody waits for.
    public var requestID: UInt64?

    public init(member: ClusterMember, isPromote: Bool = false, requestID: UInt64? = nil) {
        self.member = member
        self.isPromote = isPromote
        self.requestID = requestID
    }

    public func encoded() -> [UInt8] {
        // Encoding a struct of strings, integers and booleans cannot fail.
        (try? Array(JSONEncoder().encode(self))) ?? []
    }

    public init?(encoded bytes: [UInt8]) {
        guard let decoded = try? JSONDecoder().decode(Self.self, from: Data(bytes)) else { return nil }
        self = decoded
    }
}

extension Replica {
    /// Applies one membership entry to ``membership`` and the backend. An entry the membership
    /// refuses (etcd's `ValidateConfigurationChange` failing at apply, e.g. two adds of the same
    /// ID racing) changes nothing, here or in Raft's configuration: every member refuses it
    /// alike, since all apply the same entries to the same membership. Returns the outcome for
    /// the request that proposed it, if one did.
    func applyConfChange(_ entry: Entry) throws(ReplicaError) -> AppliedRequest? {
        guard let change = ConfChange(encoded: entry.data) else {
            refuseConfChange(entry, reason: "it does not decode")
            return nil
        }
        let context = MembershipChangeContext(encoded: change.context)
        func outcome(_ result: Result<ApplyResponse, ReplicaError>) -> AppliedRequest? {
            guard let id = context?.requestID, id != 0 else { return nil }
            return AppliedRequest(requestID: id, result: result)
        }
        let membershipChange: MembershipChange
        switch change.kind {
        case .addNode, .addLearnerNode:
            if change.context.isEmpty {
                // Logs written before membership was replicated bootstrap their member without
                // a description; it is known by its ID alone until it is described.
                let id = MemberID(change.nodeID.rawValue)
                membershipChange = .add(ClusterMember(id: id, peerURLs: [], isLearner: change.kind == .addLearnerNode))
                break
            }
            guard let context, context.member.id.rawValue == change.nodeID.rawValue else {
                refuseConfChange(entry, reason: "its member description does not decode or names another member")
                return nil
            }
            if context.isPromote {
                membershipChange = .promote(context.member.id)
            } else {
                var member = context.member
                member.isLearner = change.kind == .addLearnerNode
                membershipChange = .add(member)
            }
        case .removeNode:
            membershipChange = .remove(MemberID(change.nodeID.rawValue))
        case .updateNode:
            guard let context, context.member.id.rawValue == change.nodeID.rawValue else {
                refuseConfChange(entry, reason: "its member description does not decode or names another member")
                return nil
            }
            membershipChange = .update(context.member.id, peerURLs: context.member.peerURLs)
        }
        do {
            try membership.apply(membershipChange)
        } catch {
            refuseConfChange(entry, reason: error.message)
            return outcome(.failure(.request(error)))
        }
        try saveMembership()
        return outcome(.success(.membershipChanged(membership)))
    }

    /// etcd's `--experimental-max-learners`: how many learners a membership change may leave.
    /// Not replicated (each member checks with its own setting, as etcd does).
    public func limitLearners(to count: Int) {
        membership.maxLearners = count
    }

    /// Records `member` outside Raft, in a backend transaction of its own: only for a data
    /// directory written before membership was replicated (its one member is known from its
    /// identity). Must not be called with a batch open.
    public func seedMembership(_ member: ClusterMember) throws {
        var seeded = membership
        try seeded.apply(.add(member))
        try store.beginBatch()
        do {
            try membershipTable.save(seeded)
            try store.commitBatch()
        } catch {
            store.abortBatch()
            throw error
        }
        membership = seeded
    }

    private func refuseConfChange(_ entry: Entry, reason: String) {
        logger.warning(
            "membership entry refused; it changes nothing", metadata: ["index": "\(entry.index)", "reason": "\(reason)"])
        recordRefusedConfChange(entry.index)
    }

    func saveMembership() throws(ReplicaError) {
        do {
            try membershipTable.save(membership)
        } catch {
            throw .storage("\(error)")
        }
    }

    /// The indexes of the membership entries refused since the last call: Raft's configuration
    /// must skip them (see ``applyConfChange(_:)``).
    public func takeRefusedConfChanges() -> Set<UInt64> {
        takeRefusedConfChangeIndexes()
    }
}
