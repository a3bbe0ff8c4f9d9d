import EtcdAPI
import EtcdCommon
import EtcdReplica
import GRPCCore
import SwiftProtobuf

/// etcd's KV service: reads served from the store, writes proposed to the log and answered once
/// applied.
struct KVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let writer: RequestProposer
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let maxTxnOperations: Int

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws
        -> Etcdserverpb_RangeResponse
    {
        try RequestValidation.check(request)
        // One member applies every write before answering it, so the store is always at least as
        // new as any acknowledged write: serializable and linearizable reads are served alike.
        let (response, term) = try replica.withReplica { (replica) throws(ReplicaError) in
            (try replica.range(request), replica.term)
        }
        var filled = response
        header.fill(&filled.header, term: term)
        return filled
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        try RequestValidation.check(request)
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.put = request
        guard case .put(var response) = try await writer.propose(entry) else {
            preconditionFailure("a put was answered with another kind of response")
        }
        header.fill(&response.header, term: writer.term)
        return response
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws
        -> Etcdserverpb_DeleteRangeResponse
    {
        try RequestValidation.check(request)
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.deleteRange = request
        guard case .deleteRange(var response) = try await writer.propose(entry) else {
            preconditionFailure("a delete was answered with another kind of response")
        }
        header.fill(&response.header, term: writer.term)
        return response
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        try RequestValidation.check(request, maxOperations: maxTxnOperations)
        var response: Etcdserverpb_TxnResponse
        if Replica.isReadOnly(request) {
            // Only reads: served like a Range, without a log entry or a new revision (etcd does
            // the same).
            response = try replica.withReplica { (replica) throws(ReplicaError) in try replica.readOnlyTxn(request) }
        } else {
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.txn = request
            guard case .txn(let applied) = try await writer.propose(entry) else {
                preconditionFailure("a txn was answered with another kind of response")
            }
            response = applied
        }
        header.fill(&response.header, term: writer.term)
        return response
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws
        -> Etcdserverpb_CompactionResponse
    {
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.compaction = request
        // Compaction removes old revisions inside the apply step itself, so by the time it is
        // answered it is physical: `physical: true` needs no extra wait.
        guard case .compaction(var response) = try await writer.propose(entry) else {
            preconditionFailure("a compaction was answered with another kind of response")
        }
        header.fill(&response.header, term: writer.term)
        return response
    }
}
