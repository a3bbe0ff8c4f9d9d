import SwiftProtobuf
import EtcdAPI
import EtcdCommon
import EtcdReplica
import Synchronization

/// Turns a mutating request into a log proposal and waits for its result.
final class RequestProposer: Sendable {
    private let queue: ProposalQueue
    private let maxRequestBytes: Int
    private let nextRequestID: Atomic<UInt64>
    let term: UInt64

    init(queue: ProposalQueue, maxRequestBytes: Int, memberID: MemberID, term: UInt64) {
        self.queue = queue
        self.maxRequestBytes = maxRequestBytes
        self.term = term
        // Request IDs start from the member ID's low bits, as etcd's generator does, so that
        // IDs from different members do not collide.
        nextRequestID = Atomic(memberID.rawValue << 48)
    }

    func propose(_ request: Etcdserverpb_InternalRaftRequest) async throws -> ApplyResponse {
        var entry = request
        entry.header.id = nextRequestID.add(1, ordering: .relaxed).newValue
        // The size that counts is the log entry's, as in etcd; the entry is what Raft will carry.
        let encoded: [UInt8] = try entry.serializedBytes()
        if encoded.count > maxRequestBytes { throw EtcdError.requestTooLarge }
        return try await withCheckedThrowingContinuation { continuation in
            do {
                try queue.submit(Proposal(request: entry, continuation: continuation))
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}
