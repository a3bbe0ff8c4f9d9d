import EtcdAPI
import EtcdBackend
import EtcdLease
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

/// The bytes of `text`, as a request field wants them.
func data(_ text: String) -> Data { Data(text.utf8) }

/// The keys of `kvs` as text, in the order given.
func keys(_ kvs: [Mvccpb_KeyValue]) -> [String] {
    kvs.map { String(decoding: $0.key, as: UTF8.self) }
}

/// A response of another kind than the test asked for.
struct UnexpectedResponse: Error, CustomStringConvertible {
    var description: String
}

/// A replica on a fresh in-memory store, with one helper per request kind. Writes become log
/// entries after the last applied one and go through ``Replica/apply(_:)`` and a backend commit,
/// as the server's Raft loop hands them over.
final class TestReplica {
    let replica: Replica
    var store: MVCCStore { replica.store }
    private var nextRequestID: UInt64 = 1

    convenience init() throws {
        try self.init(store: MVCCStore(backend: Backend(path: nil)))
    }

    init(store: MVCCStore, clock: @escaping @Sendable () -> MonotonicTime = { .zero }) throws {
        replica = try Replica(store: store, logger: Logger(label: "etcd.replica.test"), clock: clock)
    }

    /// Applies `requests` as consecutive committed entries, commits the backend, and returns
    /// their results in order.
    func applyEntries(_ requests: [Etcdserverpb_InternalRaftRequest], term: UInt64 = 2) throws
        -> [Result<ApplyResponse, ReplicaError>]
    {
        var entries: [Entry] = []
        var ids: [UInt64] = []
        for request in requests {
            var request = request
            request.header.id = nextRequestID
            ids.append(nextRequestID)
            nextRequestID += 1
            let index = replica.appliedIndex + UInt64(entries.count) + 1
            entries.append(Entry(term: term, index: index, data: try request.serializedBytes()))
        }
        let applied = try replica.apply(entries)
        try replica.commitBackend(durably: false)
        let byID = Dictionary(uniqueKeysWithValues: applied.map { ($0.requestID, $0.result) })
        return try ids.map { id in
            guard let result = byID[id] else { throw UnexpectedResponse(description: "no result for request \(id)") }
            return result
        }
    }

    /// Applies one request and returns its result.
    func apply(_ request: Etcdserverpb_InternalRaftRequest) throws -> ApplyResponse {
        try applyEntries([request])[0].get()
    }

    @discardableResult
    func put(_ key: String, _ value: String = "", prevKV: Bool = false) throws -> Etcdserverpb_PutResponse {
        var request = putRequest(key, value)
        request.prevKv = prevKV
        return try put(request)
    }

    @discardableResult
    func put(_ request: Etcdserverpb_PutRequest) throws -> Etcdserverpb_PutResponse {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.put = request
        guard case .put(let response) = try apply(raft) else { throw UnexpectedResponse(description: "not a put") }
        return response
    }

    @discardableResult
    func delete(_ key: String, end: String = "", prevKV: Bool = false) throws -> Etcdserverpb_DeleteRangeResponse {
        var request = deleteRequest(key, end: end)
        request.prevKv = prevKV
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.deleteRange = request
        guard case .deleteRange(let response) = try apply(raft) else {
            throw UnexpectedResponse(description: "not a delete")
        }
        return response
    }

    @discardableResult
    func txn(_ request: Etcdserverpb_TxnRequest) throws -> Etcdserverpb_TxnResponse {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.txn = request
        guard case .txn(let response) = try apply(raft) else { throw UnexpectedResponse(description: "not a txn") }
        return response
    }

    @discardableResult
    func compact(_ revision: Int64) throws -> Etcdserverpb_CompactionResponse {
        var raft = Etcdserverpb_InternalRaftRequest()
        raft.compaction = compactionRequest(revision)
        guard case .compaction(let response) = try apply(raft) else {
            throw UnexpectedResponse(description: "not a compaction")
        }
        return response
    }

    func range(_ request: Etcdserverpb_RangeRequest) throws -> Etcdserverpb_RangeResponse {
        try replica.range(request)
    }

    func range(_ key: String, end: String = "", revision: Int64 = 0) throws -> Etcdserverpb_RangeResponse {
        try replica.range(rangeRequest(key, end: end, revision: revision))
    }

    /// The one key-value stored under `key` now; fails the test if there is none.
    func get(_ key: String) throws -> Mvccpb_KeyValue {
        let response = try range(key)
        return try #require(response.kvs.first, "no key \(key)")
    }
}

// MARK: Requests

func rangeRequest(_ key: String, end: String = "", revision: Int64 = 0, limit: Int64 = 0)
    -> Etcdserverpb_RangeRequest
{
    var request = Etcdserverpb_RangeRequest()
    request.key = data(key)
    request.rangeEnd = data(end)
    request.revision = revision
    request.limit = limit
    return request
}

func putRequest(_ key: String, _ value: String = "", lease: Int64 = 0) -> Etcdserverpb_PutRequest {
    var request = Etcdserverpb_PutRequest()
    request.key = data(key)
    request.value = data(value)
    request.lease = lease
    return request
}

func deleteRequest(_ key: String, end: String = "") -> Etcdserverpb_DeleteRangeRequest {
    var request = Etcdserverpb_DeleteRangeRequest()
    request.key = data(key)
    request.rangeEnd = data(end)
    return request
}

func compactionRequest(_ revision: Int64) -> Etcdserverpb_CompactionRequest {
    var request = Etcdserverpb_CompactionRequest()
    request.revision = revision
    return request
}

func compare(
    _ key: String,
    end: String = "",
    _ target: Etcdserverpb_Compare.CompareTarget,
    _ result: Etcdserverpb_Compare.CompareResult,
    _ operand: Etcdserverpb_Compare.OneOf_TargetUnion
) -> Etcdserverpb_Compare {
    var compare = Etcdserverpb_Compare()
    compare.key = data(key)
    compare.rangeEnd = data(end)
    compare.target = target
    compare.result = result
    compare.targetUnion = operand
    return compare
}

func op(_ request: Etcdserverpb_RangeRequest) -> Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    op.requestRange = request
    return op
}

func op(_ request: Etcdserverpb_PutRequest) -> Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    op.requestPut = request
    return op
}

func op(_ request: Etcdserverpb_DeleteRangeRequest) -> Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    op.requestDeleteRange = request
    return op
}

func op(_ request: Etcdserverpb_TxnRequest) -> Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    op.requestTxn = request
    return op
}

func txnRequest(
    compare: [Etcdserverpb_Compare] = [],
    success: [Etcdserverpb_RequestOp] = [],
    failure: [Etcdserverpb_RequestOp] = []
) -> Etcdserverpb_TxnRequest {
    var request = Etcdserverpb_TxnRequest()
    request.compare = compare
    request.success = success
    request.failure = failure
    return request
}

// MARK: Responses

extension Etcdserverpb_TxnResponse {
    /// The response of operation `index`, which must be a range.
    func range(_ index: Int) throws -> Etcdserverpb_RangeResponse {
        guard responses.indices.contains(index), case .responseRange(let response) = responses[index].response else {
            throw UnexpectedResponse(description: "response \(index) of \(responses.count) is not a range")
        }
        return response
    }

    func put(_ index: Int) throws -> Etcdserverpb_PutResponse {
        guard responses.indices.contains(index), case .responsePut(let response) = responses[index].response else {
            throw UnexpectedResponse(description: "response \(index) of \(responses.count) is not a put")
        }
        return response
    }

    func deleteRange(_ index: Int) throws -> Etcdserverpb_DeleteRangeResponse {
        guard responses.indices.contains(index),
            case .responseDeleteRange(let response) = responses[index].response
        else {
            throw UnexpectedResponse(description: "response \(index) of \(responses.count) is not a delete")
        }
        return response
    }

    func txn(_ index: Int) throws -> Etcdserverpb_TxnResponse {
        guard responses.indices.contains(index), case .responseTxn(let response) = responses[index].response else {
            throw UnexpectedResponse(description: "response \(index) of \(responses.count) is not a txn")
        }
        return response
    }
}

/// Runs `body` with a fresh directory that is removed afterwards.
func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let path = NSTemporaryDirectory() + "swift-etcd-replica-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}
