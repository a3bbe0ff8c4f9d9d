import EtcdAPI
import EtcdCommon
import EtcdRaft
import EtcdReplica
import Foundation
import GRPCCore
import SwiftProtobuf
import Synchronization

/// The request handlers' door to the Raft loop: proposes mutating requests and waits for their
/// results, and waits for linearizable read points. Every wait has a deadline (etcd's request
/// timeout, 5 s plus two election timeouts).
final class RequestProposer: Sendable {
    private let mailbox: RaftMailbox
    private let pending: PendingRequests
    private let maxRequestBytes: Int
    private let requestTimeout: Duration
    private let nextRequestID: Atomic<UInt64>
    private let nextReadID = Atomic<UInt64>(0)
    private let loop: RaftLoop

    init(loop: RaftLoop, maxRequestBytes: Int, requestTimeout: Duration, memberID: MemberID) {
        self.loop = loop
        self.mailbox = loop.mailbox
        self.pending = loop.pending
        self.maxRequestBytes = maxRequestBytes
        self.requestTimeout = requestTimeout
        nextRequestID = Atomic(Self.firstRequestID(memberID: memberID, now: Date()))
    }

    /// etcd's request ID layout: the member ID's low 16 bits, then the start time in
    /// milliseconds (40 bits), then a counter. IDs stay unique across members and across
    /// restarts of one member, so a result replayed from the WAL never answers a new request.
    static func firstRequestID(memberID: MemberID, now: Date) -> UInt64 {
        let milliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        return (memberID.rawValue & 0xffff) << 48 | (milliseconds & 0xff_ffff_ffff) << 8
    }

    /// A lease ID for a grant that names none: the next request ID with the sign bit cleared,
    /// as etcd does, so IDs are positive and unique across members and restarts.
    func newLeaseID() -> Int64 {
        while true {
            let id = Int64(bitPattern: nextRequestID.add(1, ordering: .relaxed).newValue & ((1 << 63) - 1))
            if id != 0 { return id }
        }
    }

    /// Takes the request over (`consuming`): stamping its ID then mutates the caller's storage in
    /// place rather than copying the whole request (a copy of its many fields per write).
    func propose(_ entry: consuming Etcdserverpb_InternalRaftRequest) async throws -> ApplyResponse {
        let id = nextRequestID.add(1, ordering: .relaxed).newValue
        entry.header.id = id
        // The size that counts is the log entry's, as in etcd; the entry is what Raft will carry.
        let encoded: [UInt8] = try entry.serializedBytes()
        if encoded.count > maxRequestBytes { throw EtcdError.requestTooLarge }
        // Nothing enters the log that apply cannot read back: a committed entry that does not
        // decode would stop the member on every restart. Validation should make this
        // unreachable; the check keeps a gap in validation from becoming a bricked member.
        do {
            _ = try InternalRequestCoding.decode(encoded)
        } catch {
            throw RPCError(code: .invalidArgument, message: "etcdserver: request cannot be applied: \(error)")
        }
        return try await submitAndWait(QueuedProposal(id: id, data: encoded), bytes: encoded.count)
    }

    private func submitAndWait(_ proposal: QueuedProposal, bytes: Int) async throws -> ApplyResponse {
        let id = proposal.id
        let deadline = ContinuousClock.now.advanced(by: requestTimeout)
        let pending = self.pending
        let mailbox = self.mailbox
        let loop = self.loop
        // A caller that goes away (the client cancelled or disconnected) frees its place among
        // the waiting at once rather than at its deadline; the entry itself may still be applied,
        // as in etcd, since it may already be in the log.
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                do {
                    try pending.registerWrite(id, continuation, deadline: deadline, bytes: bytes)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                if Task.isCancelled {
                    pending.failWrites([id], with: Self.cancelled)
                    return
                }
                do {
                    if !loop.forwardProposalIfIdle(proposal) { try mailbox.submit(proposal) }
                } catch {
                    pending.failWrites([id], with: error)
                }
            }
        } onCancel: {
            pending.failWrites([id], with: Self.cancelled)
        }
    }

    /// Proposes a membership change and returns the membership once it is applied here; the
    /// change's context carries the request ID its outcome is reported under.
    func proposeMembershipChange(
        kind: ConfChange.Kind, member: ClusterMember, isPromote: Bool = false
    ) async throws -> ClusterMembership {
        let id = nextRequestID.add(1, ordering: .relaxed).newValue
        let context = MembershipChangeContext(member: member, isPromote: isPromote, requestID: id)
        let change = ConfChange(kind: kind, nodeID: NodeID(member.id.rawValue), context: context.encoded())
        let response = try await submitAndWait(QueuedProposal(id: id, data: [], confChange: change), bytes: change.context.count)
        guard case .membershipChanged(let membership) = response else {
            throw RPCError(code: .internalError, message: "etcdserver: unexpected result of a membership change")
        }
        return membership
    }

    /// What gRPC's Go server reports for a call whose context was cancelled.
    static let cancelled = RPCError(code: .cancelled, message: "context canceled")

    /// Returns once this member has applied everything committed before the call (etcd's
    /// linearizable read barrier, through Raft's ReadIndex).
    func waitForLinearizableRead() async throws {
        if loop.readIndexIfIdle() { return }
        let id = nextReadID.add(1, ordering: .relaxed).newValue
        let deadline = ContinuousClock.now.advanced(by: requestTimeout)
        let pending = self.pending
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                do {
                    try pending.registerRead(id, continuation, deadline: deadline)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                if Task.isCancelled {
                    pending.completeReads([id], with: .failure(Self.cancelled))
                    return
                }
                do {
                    if !loop.requestReadIndexIfIdle(id) { try mailbox.submitRead(id) }
                } catch {
                    pending.completeReads([id], with: .failure(error))
                }
            }
        } onCancel: {
            pending.completeReads([id], with: .failure(Self.cancelled))
        }
    }
}
