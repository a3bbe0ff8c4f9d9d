import EtcdAPI
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import GRPCCore
import SwiftProtobuf

/// etcd's KV service: writes proposed through Raft and answered once applied; reads served from
/// the store, after a ReadIndex round unless serializable.
struct KVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let writer: RequestProposer
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let maxTxnOperations: Int
    let quota: BackendQuota
    let authenticator: Authenticator

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws
        -> Etcdserverpb_RangeResponse
    {
        try RequestValidation.check(request)
        // A linearizable read waits until this member has applied everything committed when it
        // arrived (Raft's ReadIndex, shared by all reads that arrive together); a serializable
        // one reads whatever this member has applied.
        if !request.serializable { try await writer.waitForLinearizableRead() }
        let identity = try await authenticator.identity()
        var response = try replica.read { (replica) throws(ReplicaError) in
            try replica.checkRead(identity, key: request.key, rangeEnd: request.rangeEnd)
            return try replica.range(request)
        }
        header.fill(&response.header)
        return response
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        // The quota first, as etcd's quota layer wraps the KV service.
        try await quota.check(cost: QuotaCost.of(request))
        try RequestValidation.check(request)
        var entry = try await authenticator.entry()
        entry.put = request
        guard case .put(var response) = try await writer.propose(consume entry) else {
            preconditionFailure("a put was answered with another kind of response")
        }
        header.fill(&response.header)
        return response
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws
        -> Etcdserverpb_DeleteRangeResponse
    {
        try RequestValidation.check(request)
        var entry = try await authenticator.entry()
        entry.deleteRange = request
        guard case .deleteRange(var response) = try await writer.propose(consume entry) else {
            preconditionFailure("a delete was answered with another kind of response")
        }
        header.fill(&response.header)
        return response
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        try await quota.check(cost: QuotaCost.of(request))
        try RequestValidation.check(request, maxOperations: maxTxnOperations)
        var response: Etcdserverpb_TxnResponse
        if Replica.isReadOnly(request) {
            // Only reads: served like a Range, without a log entry or a new revision, and
            // linearizable unless every range in it asks to be serializable (as etcd decides).
            if !Self.isSerializable(request) { try await writer.waitForLinearizableRead() }
            let identity = try await authenticator.identity()
            response = try replica.read { (replica) throws(ReplicaError) in
                try replica.checkTxnPermissions(identity, request)
                return try replica.readOnlyTxn(request)
            }
        } else {
            var entry = try await authenticator.entry()
            entry.txn = request
            guard case .txn(let applied) = try await writer.propose(consume entry) else {
                preconditionFailure("a txn was answered with another kind of response")
            }
            response = applied
        }
        header.fill(&response.header)
        return response
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws
        -> Etcdserverpb_CompactionResponse
    {
        // Compacting history is an admin's business (etcd 3.5.28 on).
        try await authenticator.requireAdmin()
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.compaction = request
        // The compaction takes effect when applied; its rows are deleted afterwards in bounded
        // steps. `physical` waits for those too, as etcd's does (for as long as the client does).
        guard case .compaction(var response) = try await writer.propose(consume entry) else {
            preconditionFailure("a compaction was answered with another kind of response")
        }
        if request.physical {
            while try replica.read({ $0.store.physicallyCompactedRevision }) < request.revision {
                try await Task.sleep(for: Self.physicalCompactionPollInterval)
            }
        }
        header.fill(&response.header)
        return response
    }

    /// How often a `physical` compaction looks whether its rows are gone (etcd's default pause
    /// between deletion batches).
    static let physicalCompactionPollInterval = Duration.milliseconds(10)

    /// etcd's `isTxnSerializable`: every range in both branches is serializable.
    static func isSerializable(_ request: Etcdserverpb_TxnRequest) -> Bool {
        (request.success + request.failure).allSatisfy {
            if case .requestRange(let range) = $0.request { return range.serializable }
            return false
        }
    }
}
