package import EtcdAPI
package import EtcdCommon
import Foundation

/// The checks etcd makes on a request when it arrives, before it is proposed (etcd's
/// `v3rpc/key.go`): they need no state, so a bad request never reaches the log.
package enum RequestValidation {
    package static func check(_ request: Etcdserverpb_RangeRequest) throws(EtcdError) {
        if request.key.isEmpty { throw .emptyKey }
        if case .UNRECOGNIZED = request.sortOrder { throw .invalidSortOption }
        if case .UNRECOGNIZED = request.sortTarget { throw .invalidSortOption }
    }

    package static func check(_ request: Etcdserverpb_PutRequest) throws(EtcdError) {
        if request.key.isEmpty { throw .emptyKey }
        if request.ignoreValue && !request.value.isEmpty { throw .valueProvided }
        if request.ignoreLease && request.lease != 0 { throw .leaseProvided }
    }

    package static func check(_ request: Etcdserverpb_DeleteRangeRequest) throws(EtcdError) {
        if request.key.isEmpty { throw .emptyKey }
    }

    /// The deepest nesting of transactions accepted: a txn inside a txn inside ... this many
    /// levels. etcd has no separate limit (each level takes at least one operation from the
    /// `--max-txn-ops` budget, so 128 levels by default), but every level costs two levels of
    /// protobuf nesting, and decoders refuse messages nested past 100 levels (SwiftProtobuf's
    /// default, which our gRPC ingress uses). 32 levels stays far inside what every decoder on
    /// the way (ingress, the log entry that wraps the request, apply) accepts, so a txn that
    /// passes here can always be applied. Deeper ones get etcd's answer for an exhausted budget.
    package static let maxTxnNestingDepth = 32

    package static func check(_ request: Etcdserverpb_TxnRequest, maxOperations: Int) throws(EtcdError) {
        try checkShape(request, maxOperations: maxOperations, depth: 1)
        _ = try WrittenKeys(request.success)
        _ = try WrittenKeys(request.failure)
    }

    /// Sizes, keys and the kind of every operation, nested transactions included.
    private static func checkShape(_ request: Etcdserverpb_TxnRequest, maxOperations: Int, depth: Int) throws(EtcdError) {
        if depth > maxTxnNestingDepth { throw .tooManyOperations }
        let operations = max(request.compare.count, request.success.count, request.failure.count)
        if operations > maxOperations { throw .tooManyOperations }
        for compare in request.compare where compare.key.isEmpty { throw .emptyKey }
        for op in request.success + request.failure {
            switch op.request {
            case .requestRange(let range): try check(range)
            case .requestPut(let put): try check(put)
            case .requestDeleteRange(let delete): try check(delete)
            // A nested txn gets only what its parent leaves of the budget, as in etcd.
            case .requestTxn(let inner):
                try checkShape(inner, maxOperations: maxOperations - operations, depth: depth + 1)
            // An operation with nothing in it is what etcd calls a missing key.
            case nil: throw .keyNotFound
            }
        }
    }

    /// The keys one branch of a transaction writes, to refuse a branch that writes a key twice
    /// (etcd's `checkIntervals`). Puts are single keys; deletes are intervals. The two branches of
    /// a nested transaction exclude each other, so they may put the same key.
    struct WrittenKeys {
        var puts: Set<Data> = []
        var deletes: [ByteInterval] = []

        init(_ ops: [Etcdserverpb_RequestOp]) throws(EtcdError) {
            for op in ops {
                guard case .requestDeleteRange(let delete) = op.request else { continue }
                deletes.append(ByteInterval(key: delete.key, rangeEnd: delete.rangeEnd))
            }
            for op in ops {
                guard case .requestTxn(let inner) = op.request else { continue }
                let then = try WrittenKeys(inner.success)
                let otherwise = try WrittenKeys(inner.failure)
                for key in then.puts {
                    if puts.contains(key) || deletes.contains(where: { $0.contains(key) }) { throw .duplicateKey }
                    puts.insert(key)
                }
                for key in otherwise.puts {
                    if puts.contains(key) && !then.puts.contains(key) { throw .duplicateKey }
                    if deletes.contains(where: { $0.contains(key) }) { throw .duplicateKey }
                    puts.insert(key)
                }
                deletes += then.deletes + otherwise.deletes
            }
            for op in ops {
                guard case .requestPut(let put) = op.request else { continue }
                if puts.contains(put.key) || deletes.contains(where: { $0.contains(put.key) }) {
                    throw .duplicateKey
                }
                puts.insert(put.key)
            }
        }
    }

    /// A half-open interval of keys compared as raw bytes. A delete without a range end covers its
    /// one key. etcd compares the "\0" from-key end as a plain byte string here, so a from-key
    /// delete overlaps no put; we keep that quirk for identical answers.
    struct ByteInterval {
        var start: Data
        var end: Data?

        init(key: Data, rangeEnd: Data) {
            start = key
            end = rangeEnd.isEmpty ? nil : rangeEnd
        }

        func contains(_ key: Data) -> Bool {
            guard let end else { return key == start }
            return !key.lexicographicallyPrecedes(start) && key.lexicographicallyPrecedes(end)
        }
    }
}
