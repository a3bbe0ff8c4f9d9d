public import EtcdAPI
import Foundation

/// Short builders for KV requests, so that raw gRPC scenarios read like the etcdctl ones.
///
/// Keys and values are strings (UTF-8); `end: "\0"` means every key from `key` on, as in etcd.
public enum KVRequest {
    /// A Range of `key`, or of `[key, end)`, adjusted by `configure`.
    public static func range(
        _ key: String,
        end: String? = nil,
        _ configure: (inout Etcdserverpb_RangeRequest) -> Void = { _ in }
    ) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        if let end { request.rangeEnd = Data(end.utf8) }
        configure(&request)
        return request
    }

    /// A Put of `key` = `value`, adjusted by `configure`.
    public static func put(
        _ key: String,
        _ value: String,
        _ configure: (inout Etcdserverpb_PutRequest) -> Void = { _ in }
    ) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key.utf8)
        request.value = Data(value.utf8)
        configure(&request)
        return request
    }

    /// A DeleteRange of `key`, or of `[key, end)`, adjusted by `configure`.
    public static func delete(
        _ key: String,
        end: String? = nil,
        _ configure: (inout Etcdserverpb_DeleteRangeRequest) -> Void = { _ in }
    ) -> Etcdserverpb_DeleteRangeRequest {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = Data(key.utf8)
        if let end { request.rangeEnd = Data(end.utf8) }
        configure(&request)
        return request
    }

    /// What a compare tests, with the value it is compared to.
    public enum Operand: Sendable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value(String)
        case lease(Int64)
    }

    /// A Compare of `key` (or of every key in `[key, end)`) against `operand` with `result`.
    public static func compare(
        _ key: String,
        end: String? = nil,
        _ result: Etcdserverpb_Compare.CompareResult,
        _ operand: Operand
    ) -> Etcdserverpb_Compare {
        var compare = Etcdserverpb_Compare()
        compare.key = Data(key.utf8)
        if let end { compare.rangeEnd = Data(end.utf8) }
        compare.result = result
        switch operand {
        case .version(let version):
            compare.target = .version
            compare.targetUnion = .version(version)
        case .createRevision(let revision):
            compare.target = .create
            compare.targetUnion = .createRevision(revision)
        case .modRevision(let revision):
            compare.target = .mod
            compare.targetUnion = .modRevision(revision)
        case .value(let value):
            compare.target = .value
            compare.targetUnion = .value(Data(value.utf8))
        case .lease(let lease):
            compare.target = .lease
            compare.targetUnion = .lease(lease)
        }
        return compare
    }

    /// A Txn request.
    public static func txn(
        _ compares: [Etcdserverpb_Compare] = [],
        success: [Etcdserverpb_RequestOp] = [],
        failure: [Etcdserverpb_RequestOp] = []
    ) -> Etcdserverpb_TxnRequest {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares
        request.success = success
        request.failure = failure
        return request
    }

    /// A Compaction request.
    public static func compact(_ revision: Int64, physical: Bool = false) -> Etcdserverpb_CompactionRequest {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        request.physical = physical
        return request
    }
}

extension Etcdserverpb_RequestOp {
    /// A Range operation inside a Txn.
    public static func range(_ request: Etcdserverpb_RangeRequest) -> Self {
        var operation = Self()
        operation.request = .requestRange(request)
        return operation
    }

    /// A Put operation inside a Txn.
    public static func put(_ request: Etcdserverpb_PutRequest) -> Self {
        var operation = Self()
        operation.request = .requestPut(request)
        return operation
    }

    /// A DeleteRange operation inside a Txn.
    public static func delete(_ request: Etcdserverpb_DeleteRangeRequest) -> Self {
        var operation = Self()
        operation.request = .requestDeleteRange(request)
        return operation
    }

    /// A nested Txn inside a Txn.
    public static func txn(_ request: Etcdserverpb_TxnRequest) -> Self {
        var operation = Self()
        operation.request = .requestTxn(request)
        return operation
    }
}
