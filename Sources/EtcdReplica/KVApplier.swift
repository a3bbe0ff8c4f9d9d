package import EtcdAPI
import EtcdCommon
package import EtcdLease
package import EtcdMVCC
import Foundation

/// A view of the key space that a request can read: the store itself, or a write transaction that
/// already holds some of its own changes.
package protocol KVReadView {
    func range(_ range: KeyRange, options: RangeOptions) throws(MVCCError) -> RangeResult
}

extension MVCCStore: KVReadView {}
extension WriteTransaction: KVReadView {}

/// Applies KV requests to the MVCC store with etcd's semantics (etcd's `applierV3backend`).
///
/// Responses carry only `header.revision`; the server fills in cluster, member and term. Requests
/// are assumed validated (``RequestValidation``) before they reach here.
package struct KVApplier {
    package let store: MVCCStore
    /// The leases: a put naming one must find it, and every write transaction's puts and
    /// deletes attach and detach keys (etcd's mvcc store calls its lessor the same way).
    package let lessor: Lessor

    package init(store: MVCCStore, lessor: Lessor) {
        self.store = store
        self.lessor = lessor
    }

    package func leaseExists(_ id: Int64) -> Bool {
        lessor.contains(LeaseID(id))
    }

    // MARK: Range

    package func range(_ request: Etcdserverpb_RangeRequest, in view: some KVReadView) throws(ReplicaError)
        -> Etcdserverpb_RangeResponse
    {
        // Sorting and the revision filters need every match before the limit can be applied; a
        // plain limited read fetches one extra key so that `more` can be told.
        let needsEverything =
            request.sortOrder != .none || request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
        var fetchLimit = needsEverything ? 0 : request.limit
        // A limit of Int64.max has no "one more": Go's etcd wraps it to a negative limit, which
        // means no limit, and so do we (without the overflow).
        if fetchLimit > 0 { fetchLimit = fetchLimit == .max ? 0 : fetchLimit + 1 }

        let result: RangeResult
        do {
            result = try view.range(
                KeyRange(key: request.key, rangeEnd: request.rangeEnd),
                options: RangeOptions(limit: fetchLimit, revision: request.revision, countOnly: request.countOnly)
            )
        } catch {
            throw ReplicaError(error)
        }

        var kvs = result.kvs
        if request.maxModRevision != 0 { kvs.removeAll { $0.modRevision > request.maxModRevision } }
        if request.minModRevision != 0 { kvs.removeAll { $0.modRevision < request.minModRevision } }
        if request.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > request.maxCreateRevision } }
        if request.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < request.minCreateRevision } }

        var order = request.sortOrder
        // The store returns keys ascending already; any other target defaults to ascending.
        if request.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            kvs = Self.sorted(kvs, by: request.sortTarget, descending: order == .descend)
        }

        var response = Etcdserverpb_RangeResponse()
        if request.limit > 0 && kvs.count > request.limit {
            kvs.removeSubrange(Int(request.limit)...)
            response.more = true
        }
        response.header.revision = result.revision
        response.count = Int64(result.count)
        response.kvs = kvs.map { Mvccpb_KeyValue($0, keysOnly: request.keysOnly) }
        return response
    }

    /// A stable sort: ties keep key order, which is what etcd's small-slice sort yields too.
    private static func sorted(
        _ kvs: [KeyValue],
        by target: Etcdserverpb_RangeRequest.SortTarget,
        descending: Bool
    ) -> [KeyValue] {
        let ascending: (KeyValue, KeyValue) -> Bool
        switch target {
        case .key: ascending = { $0.key.lexicographicallyPrecedes($1.key) }
        case .version: ascending = { $0.version < $1.version }
        case .create: ascending = { $0.createRevision < $1.createRevision }
        case .mod: ascending = { $0.modRevision < $1.modRevision }
        case .value: ascending = { $0.value.lexicographicallyPrecedes($1.value) }
        case .UNRECOGNIZED: return kvs
        }
        // Ties fall back to the position in key order, so the sort is stable whatever the library.
        let ordered = kvs.enumerated().sorted { lhs, rhs in
            let (first, second) = descending ? (rhs.element, lhs.element) : (lhs.element, rhs.element)
            if ascending(first, second) { return true }
            if ascending(second, first) { return false }
            return lhs.offset < rhs.offset
        }
        return ordered.map(\.element)
    }

    // MARK: Put and DeleteRange

    /// A put on its own: checks the lease, then writes in a transaction of its own.
    package func put(_ request: Etcdserverpb_PutRequest) throws(ReplicaError) -> Etcdserverpb_PutResponse {
        if request.lease != 0 && !leaseExists(request.lease) { throw .request(.leaseNotFound) }
        return try inWriteTransaction { txn throws(ReplicaError) in try put(request, in: txn) }
    }

    package func put(_ request: Etcdserverpb_PutRequest, in txn: WriteTransaction) throws(ReplicaError)
        -> Etcdserverpb_PutResponse
    {
        let key = [UInt8](request.key)
        var value = [UInt8](request.value)
        var lease = request.lease
        var response = Etcdserverpb_PutResponse()
        do {
            if request.ignoreValue || request.ignoreLease || request.prevKv {
                let previous = try txn.range(.key(key), options: RangeOptions()).kvs.first
                if request.ignoreValue || request.ignoreLease {
                    // Keeping the old value or lease needs an old pair to keep it from.
                    guard let previous else { throw ReplicaError.request(.keyNotFound) }
                    if request.ignoreValue { value = previous.value }
                    if request.ignoreLease { lease = previous.lease }
                }
                // A key can outlive its lease only in a damaged backend (the rebuild reports such
                // orphans); keeping that lease would attach the key to nothing. etcd would stop
                // at this point; refusing the put loses nothing.
                if request.ignoreLease, lease != 0, !leaseExists(lease) {
                    throw ReplicaError.request(.leaseNotFound)
                }
                if request.prevKv, let previous { response.prevKv = Mvccpb_KeyValue(previous) }
            }
            try txn.put(key: key, value: value, lease: lease)
        } catch let error as ReplicaError {
            throw error
        } catch let error as MVCCError {
            throw ReplicaError(error)
        } catch {
            throw .storage("\(error)")
        }
        response.header.revision = store.currentRevision + 1
        return response
    }

    package func deleteRange(_ request: Etcdserverpb_DeleteRangeRequest) throws(ReplicaError)
        -> Etcdserverpb_DeleteRangeResponse
    {
        try inWriteTransaction { txn throws(ReplicaError) in try deleteRange(request, in: txn) }
    }

    package func deleteRange(_ request: Etcdserverpb_DeleteRangeRequest, in txn: WriteTransaction)
        throws(ReplicaError) -> Etcdserverpb_DeleteRangeResponse
    {
        let range = KeyRange(key: request.key, rangeEnd: request.rangeEnd)
        var response = Etcdserverpb_DeleteRangeResponse()
        do {
            if request.prevKv {
                response.prevKvs = try txn.range(range, options: RangeOptions()).kvs.map { Mvccpb_KeyValue($0) }
            }
            response.deleted = try txn.deleteRange(range)
        } catch {
            throw ReplicaError(error)
        }
        // A delete that removed nothing (and follows no other change) leaves the revision alone.
        response.header.revision = store.currentRevision + (txn.changeCount > 0 ? 1 : 0)
        return response
    }

    // MARK: Compaction

    package func compact(_ request: Etcdserverpb_CompactionRequest) throws(ReplicaError)
        -> Etcdserverpb_CompactionResponse
    {
        do {
            try store.compact(request.revision)
        } catch {
            throw ReplicaError(error)
        }
        var response = Etcdserverpb_CompactionResponse()
        response.header.revision = store.currentRevision
        return response
    }

    // MARK: Transactions

    /// Runs `body` in one write transaction and ends it. A failure after the transaction changed
    /// something cannot be undone here: it is reported as a storage failure so that the caller
    /// rolls the whole batch back, as etcd treats it as fatal.
    package func inWriteTransaction<Result>(
        _ body: (WriteTransaction) throws(ReplicaError) -> Result
    ) throws(ReplicaError) -> Result {
        let txn = store.beginWrite()
        do {
            let result = try body(txn)
            txn.end()
            for event in txn.changes {
                switch event.kind {
                case .put: lessor.recordPut(event.kv.key, lease: LeaseID(event.kv.lease))
                case .delete: lessor.recordDelete(event.kv.key)
                }
            }
            return result
        } catch {
            let changed = txn.changeCount > 0
            txn.end()
            if changed, case .request(let requestError) = error {
                throw .storage("request failed after changing the store: \(requestError.message)")
            }
            throw error
        }
    }
}
