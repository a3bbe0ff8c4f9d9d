public import EtcdAPI
import EtcdCommon
public import EtcdMVCC
public import Logging

/// What applying one log entry produced.
public enum ApplyResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
}

/// One member's state machine: the log, the applier and the store, driven by a single owner.
///
/// Mutating requests are appended to the log, and committed entries are applied in index order in
/// one backend transaction per batch, together with the applied index (etcd's consistent index), so
/// that after a crash the store and the applied index agree. Reads go straight to the store.
///
/// Not `Sendable`: the server keeps it behind one lock and feeds it from one apply loop.
public final class Replica {
    public let store: MVCCStore
    private var applier: KVApplier
    private var log: LocalLog
    private let logger: Logger
    public private(set) var appliedIndex: UInt64

    static let appliedIndexMetaKey = "consistent_index"
    static let termMetaKey = "term"

    public init(store: MVCCStore, logger: Logger) throws(ReplicaError) {
        self.store = store
        self.logger = logger
        self.applier = KVApplier(store: store)
        do {
            appliedIndex = UInt64(clamping: try store.meta(Self.appliedIndexMetaKey) ?? 0)
        } catch {
            throw ReplicaError(error)
        }
        log = LocalLog(appliedIndex: appliedIndex)
    }

    /// The term of the log; fixed until Raft elects leaders.
    public var term: UInt64 { LocalLog.term }

    // MARK: Reads

    public func range(_ request: Etcdserverpb_RangeRequest) throws(ReplicaError) -> Etcdserverpb_RangeResponse {
        try applier.range(request, in: store)
    }

    /// A transaction with only reads in it; it changes nothing and needs no log entry.
    public func readOnlyTxn(_ request: Etcdserverpb_TxnRequest) throws(ReplicaError) -> Etcdserverpb_TxnResponse {
        precondition(KVApplier.isReadOnly(request), "readOnlyTxn was given a txn that writes")
        return try applier.txn(request)
    }

    public static func isReadOnly(_ request: Etcdserverpb_TxnRequest) -> Bool {
        KVApplier.isReadOnly(request)
    }

    // MARK: Writes

    /// Appends the requests to the log and applies everything committed, in one backend
    /// transaction. Results come back in the order of `requests`.
    ///
    /// If the backend fails, the whole batch is rolled back and every request in it fails with a
    /// storage error: nothing of it is applied, in memory or on disk.
    public func propose(_ requests: [Etcdserverpb_InternalRaftRequest]) -> [Result<ApplyResponse, ReplicaError>] {
        for request in requests { _ = log.append(request) }
        let entries = log.takeCommitted()
        precondition(entries.count == requests.count, "local log committed \(entries.count) of \(requests.count)")

        do {
            try store.beginBatch()
        } catch {
            return Array(repeating: .failure(ReplicaError(error)), count: entries.count)
        }
        var results: [Result<ApplyResponse, ReplicaError>] = []
        results.reserveCapacity(entries.count)
        for entry in entries {
            precondition(entry.index == appliedIndex + 1, "applying index \(entry.index) after \(appliedIndex)")
            let result = apply(entry.request)
            if case .failure(.storage(let reason)) = result {
                return abort(count: entries.count, reason: reason)
            }
            results.append(result)
            appliedIndex = entry.index
        }
        do {
            try store.setMeta(Self.appliedIndexMetaKey, Int64(appliedIndex))
            try store.setMeta(Self.termMetaKey, Int64(term))
            try store.commitBatch()
        } catch {
            // commitBatch has already restored memory from disk.
            return abort(count: entries.count, reason: "\(error)", rollBack: false)
        }
        return results
    }

    private func abort(count: Int, reason: String, rollBack: Bool = true) -> [Result<ApplyResponse, ReplicaError>] {
        logger.error("backend failed; batch rolled back", metadata: ["reason": "\(reason)", "entries": "\(count)"])
        if rollBack { store.abortBatch() }
        // The log entries of the failed batch are dropped with it; the applied index rewinds to
        // what the backend holds.
        appliedIndex = UInt64(clamping: (try? store.meta(Self.appliedIndexMetaKey)) ?? 0)
        log = LocalLog(appliedIndex: appliedIndex)
        return Array(repeating: .failure(.storage(reason)), count: count)
    }

    private func apply(_ request: Etcdserverpb_InternalRaftRequest) -> Result<ApplyResponse, ReplicaError> {
        do throws(ReplicaError) {
            if request.hasPut { return .success(.put(try applier.put(request.put))) }
            if request.hasDeleteRange { return .success(.deleteRange(try applier.deleteRange(request.deleteRange))) }
            if request.hasTxn { return .success(.txn(try applier.txn(request.txn))) }
            if request.hasCompaction { return .success(.compaction(try applier.compact(request.compaction))) }
            preconditionFailure("log entry \(appliedIndex + 1) holds no request this member can apply")
        } catch {
            return .failure(error)
        }
    }
}
