package import EtcdAPI
import EtcdCommon
import EtcdMVCC
import Foundation

extension KVApplier {
    /// Which branch each transaction took, decided before anything is written: nested transactions'
    /// compares see the key space as it was when the outer transaction began, as in etcd.
    struct TxnPlan {
        var succeeded: Bool
        /// One plan for each nested transaction in the chosen branch, in order.
        var nested: [TxnPlan]
    }

    package func txn(_ request: Etcdserverpb_TxnRequest) throws(ReplicaError) -> Etcdserverpb_TxnResponse {
        let plan = try makePlan(request, view: store)
        let writes = !Self.isReadOnly(request)
        if writes { try checkPuts(request, plan: plan) }
        try checkRanges(request, plan: plan)

        var response: Etcdserverpb_TxnResponse
        if writes {
            response = try inWriteTransaction { txn throws(ReplicaError) in
                var response = try execute(request, plan: plan, view: txn, writer: txn)
                response.header.revision = store.currentRevision + (txn.changeCount > 0 ? 1 : 0)
                return response
            }
        } else {
            response = try execute(request, plan: plan, view: store, writer: nil)
            response.header.revision = store.currentRevision
        }
        return response
    }

    /// A transaction whose branches only read changes nothing and needs no log entry.
    package static func isReadOnly(_ request: Etcdserverpb_TxnRequest) -> Bool {
        (request.success + request.failure).allSatisfy {
            if case .requestRange = $0.request { return true }
            return false
        }
    }

    private func makePlan(_ request: Etcdserverpb_TxnRequest, view: some KVReadView) throws(ReplicaError)
        -> TxnPlan
    {
        var succeeded = true
        for compare in request.compare {
            if try !holds(compare, view: view) {
                succeeded = false
                break
            }
        }
        var nested: [TxnPlan] = []
        for op in succeeded ? request.success : request.failure {
            if case .requestTxn(let inner) = op.request { nested.append(try makePlan(inner, view: view)) }
        }
        return TxnPlan(succeeded: succeeded, nested: nested)
    }

    /// etcd's compare: every key in the range must satisfy it; with no key at all the comparison is
    /// against a zero pair, except that a value compare on a missing key always fails.
    private func holds(_ compare: Etcdserverpb_Compare, view: some KVReadView) throws(ReplicaError) -> Bool {
        let kvs: [KeyValue]
        do {
            kvs = try view.range(KeyRange(key: compare.key, rangeEnd: compare.rangeEnd), options: RangeOptions()).kvs
        } catch .backend(let error) {
            throw .storage("\(error)")
        } catch {
            return false
        }
        if kvs.isEmpty {
            if compare.target == .value { return false }
            return Self.satisfies(compare, KeyValue(key: [], createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0))
        }
        return kvs.allSatisfy { Self.satisfies(compare, $0) }
    }

    private static func satisfies(_ compare: Etcdserverpb_Compare, _ kv: KeyValue) -> Bool {
        let ordering: Int
        switch compare.target {
        case .value:
            var expected: [UInt8] = []
            if case .value(let value) = compare.targetUnion { expected = [UInt8](value) }
            ordering = kv.value == expected ? 0 : (kv.value.lexicographicallyPrecedes(expected) ? -1 : 1)
        case .create: ordering = order(kv.createRevision, expectedInteger(compare))
        case .mod: ordering = order(kv.modRevision, expectedInteger(compare))
        case .version: ordering = order(kv.version, expectedInteger(compare))
        case .lease: ordering = order(kv.lease, expectedInteger(compare))
        case .UNRECOGNIZED: ordering = 0
        }
        switch compare.result {
        case .equal: return ordering == 0
        case .notEqual: return ordering != 0
        case .greater: return ordering > 0
        case .less: return ordering < 0
        case .UNRECOGNIZED: return true
        }
    }

    /// The number a compare holds for its target; a union holding another target's value counts as
    /// zero, as in etcd.
    private static func expectedInteger(_ compare: Etcdserverpb_Compare) -> Int64 {
        switch (compare.target, compare.targetUnion) {
        case (.create, .createRevision(let number)?), (.mod, .modRevision(let number)?),
            (.version, .version(let number)?), (.lease, .lease(let number)?):
            return number
        default:
            return 0
        }
    }

    private static func order(_ lhs: Int64, _ rhs: Int64) -> Int {
        lhs < rhs ? -1 : (lhs > rhs ? 1 : 0)
    }

    /// Puts on the chosen path that keep the old value or lease need an old pair, and a named lease
    /// must exist; either failure rejects the whole transaction before it writes.
    private func checkPuts(_ request: Etcdserverpb_TxnRequest, plan: TxnPlan) throws(ReplicaError) {
        var nested = plan.nested.makeIterator()
        for op in plan.succeeded ? request.success : request.failure {
            switch op.request {
            case .requestTxn(let inner):
                guard let innerPlan = nested.next() else { preconditionFailure("txn plan is missing a nested txn") }
                try checkPuts(inner, plan: innerPlan)
            case .requestPut(let put):
                if put.ignoreValue || put.ignoreLease {
                    let existing: RangeResult
                    do {
                        existing = try store.range(.key([UInt8](put.key)), options: RangeOptions())
                    } catch {
                        throw ReplicaError(error)
                    }
                    guard let previous = existing.kvs.first else { throw .request(.keyNotFound) }
                    // The kept lease must still exist (see `KVApplier.put`).
                    if put.ignoreLease && previous.lease != 0 && !leaseExists(previous.lease) {
                        throw .request(.leaseNotFound)
                    }
                }
                if put.lease != 0 && !leaseExists(put.lease) { throw .request(.leaseNotFound) }
            default:
                break
            }
        }
    }

    /// Reads on the chosen path at a revision the store cannot serve reject the transaction.
    private func checkRanges(_ request: Etcdserverpb_TxnRequest, plan: TxnPlan) throws(ReplicaError) {
        var nested = plan.nested.makeIterator()
        for op in plan.succeeded ? request.success : request.failure {
            switch op.request {
            case .requestTxn(let inner):
                guard let innerPlan = nested.next() else { preconditionFailure("txn plan is missing a nested txn") }
                try checkRanges(inner, plan: innerPlan)
            case .requestRange(let range) where range.revision != 0:
                if range.revision > store.currentRevision { throw .request(.futureRevision) }
                // etcd compares with the raw compaction revision, -1 before any compaction.
                if range.revision < store.compactMainRevision { throw .request(.compacted) }
            default:
                break
            }
        }
    }

    private func execute(
        _ request: Etcdserverpb_TxnRequest,
        plan: TxnPlan,
        view: some KVReadView,
        writer: WriteTransaction?
    ) throws(ReplicaError) -> Etcdserverpb_TxnResponse {
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = plan.succeeded
        // Nested responses carry an empty header, as etcd's do; the top-level one is filled later.
        response.header = Etcdserverpb_ResponseHeader()
        var nested = plan.nested.makeIterator()
        for op in plan.succeeded ? request.success : request.failure {
            var result = Etcdserverpb_ResponseOp()
            switch op.request {
            case .requestRange(let range):
                result.response = .responseRange(try self.range(range, in: view))
            case .requestPut(let put):
                guard let writer else { preconditionFailure("a put in a read-only txn") }
                result.response = .responsePut(try self.put(put, in: writer))
            case .requestDeleteRange(let delete):
                guard let writer else { preconditionFailure("a delete in a read-only txn") }
                result.response = .responseDeleteRange(try deleteRange(delete, in: writer))
            case .requestTxn(let inner):
                guard let innerPlan = nested.next() else { preconditionFailure("txn plan is missing a nested txn") }
                result.response = .responseTxn(try execute(inner, plan: innerPlan, view: view, writer: writer))
            case nil:
                break
            }
            response.responses.append(result)
        }
        return response
    }
}
