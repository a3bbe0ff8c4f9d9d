import EtcdCommon
import EtcdReplica
import Synchronization

/// Every request waiting for the Raft loop: writes until their entry is applied, linearizable
/// reads until their read index is applied. Each has a deadline; the ticker expires overdue ones
/// with "etcdserver: request timed out" even while the loop is stuck (in a slow fsync, say), so
/// no request hangs.
///
/// Also the back-pressure point: past `capacity` waiting writes, or past `maxBytes` of their
/// encoded entries, new ones are refused at once with "etcdserver: too many requests" (etcd
/// refuses when apply lags commit by 5,000 entries; the byte bound keeps 5,000 requests of
/// `--max-request-bytes` each from holding gigabytes).
final class PendingRequests: Sendable {
    typealias WriteContinuation = CheckedContinuation<ApplyResponse, any Error>
    typealias ReadContinuation = CheckedContinuation<Void, any Error>

    private struct Waiter<Continuation> {
        var continuation: Continuation
        var deadline: ContinuousClock.Instant
        var bytes = 0
    }

    private struct State {
        var writes: [UInt64: Waiter<WriteContinuation>] = [:]
        var reads: [UInt64: Waiter<ReadContinuation>] = [:]
        var writeBytes = 0

        mutating func removeWrite(_ id: UInt64) -> WriteContinuation? {
            guard let waiter = writes.removeValue(forKey: id) else { return nil }
            writeBytes -= waiter.bytes
            return waiter.continuation
        }
    }

    private let state = Mutex(State())
    let capacity: Int
    let maxBytes: Int

    /// The default byte bound: 64 MiB of waiting entries (about 40 requests of etcd's default
    /// `--max-request-bytes`, or 250,000 small puts, far more than `capacity` allows).
    static let defaultMaxBytes = 64 << 20

    /// Writes that ended without an applied result (refused, timed out, cancelled, or the member
    /// stopped): etcd's `etcd_server_proposals_failed_total`.
    private let failedWriteCount = Atomic<UInt64>(0)
    var failedWrites: UInt64 { failedWriteCount.load(ordering: .relaxed) }

    init(capacity: Int, maxBytes: Int = PendingRequests.defaultMaxBytes) {
        precondition(capacity > 0, "pending request capacity must be positive, got \(capacity)")
        precondition(maxBytes > 0, "pending request byte bound must be positive, got \(maxBytes)")
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// Registers a write whose log entry takes `bytes`. A single entry larger than the whole
    /// bound is still let through when nothing else waits, so `--max-request-bytes` alone
    /// decides what size is allowed.
    func registerWrite(
        _ id: UInt64, _ continuation: WriteContinuation, deadline: ContinuousClock.Instant, bytes: Int = 0
    ) throws(EtcdError) {
        try state.withLock { (state) throws(EtcdError) in
            if state.writes.count >= capacity { throw .tooManyRequests }
            if state.writeBytes > 0, state.writeBytes + bytes > maxBytes { throw .tooManyRequests }
            precondition(state.writes[id] == nil, "request ID \(id) is already waiting")
            state.writes[id] = Waiter(continuation: continuation, deadline: deadline, bytes: bytes)
            state.writeBytes += bytes
        }
    }

    var waitingWriteBytes: Int { state.withLock { $0.writeBytes } }

    func registerRead(_ id: UInt64, _ continuation: ReadContinuation, deadline: ContinuousClock.Instant) throws(EtcdError) {
        try state.withLock { (state) throws(EtcdError) in
            if state.reads.count >= capacity { throw .tooManyRequests }
            precondition(state.reads[id] == nil, "read ID \(id) is already waiting")
            state.reads[id] = Waiter(continuation: continuation, deadline: deadline)
        }
    }

    var waitingWrites: Int { state.withLock { $0.writes.count } }
    var waitingReads: Int { state.withLock { $0.reads.count } }

    /// Answers the writers of applied requests. Results for requests nobody waits for (proposed
    /// before a restart, or already timed out) are dropped.
    func complete(_ applied: [AppliedRequest]) {
        guard !applied.isEmpty else { return }
        let answers = state.withLock { state in
            applied.compactMap { request in
                state.removeWrite(request.requestID).map { ($0, request.result) }
            }
        }
        for (continuation, result) in answers {
            switch result {
            case .success(let response): continuation.resume(returning: response)
            case .failure(let error): continuation.resume(throwing: error)
            }
        }
    }

    func failWrites(_ ids: [UInt64], with error: any Error) {
        let continuations = state.withLock { state in ids.compactMap { state.removeWrite($0) } }
        failedWriteCount.add(UInt64(continuations.count), ordering: .relaxed)
        for continuation in continuations { continuation.resume(throwing: error) }
    }

    func completeReads(_ ids: [UInt64], with result: Result<Void, any Error>) {
        guard !ids.isEmpty else { return }
        let continuations = state.withLock { state in ids.compactMap { state.reads.removeValue(forKey: $0)?.continuation } }
        for continuation in continuations { continuation.resume(with: result) }
    }

    /// Fails every request whose deadline has passed.
    func expire(now: ContinuousClock.Instant) {
        let (writes, reads) = state.withLock { state in
            let writes = state.writes.filter { $0.value.deadline <= now }.keys.compactMap { state.removeWrite($0) }
            let reads = state.reads.filter { $0.value.deadline <= now }
            for id in reads.keys { state.reads[id] = nil }
            return (writes, reads.values.map(\.continuation))
        }
        failedWriteCount.add(UInt64(writes.count), ordering: .relaxed)
        for continuation in writes { continuation.resume(throwing: EtcdError.timeout) }
        for continuation in reads { continuation.resume(throwing: EtcdError.timeout) }
    }

    /// Fails everything still waiting (the member stopped).
    func failAll(with error: any Error) {
        let (writes, reads) = state.withLock { state in
            defer {
                state.writes.removeAll()
                state.reads.removeAll()
                state.writeBytes = 0
            }
            return (state.writes.values.map(\.continuation), state.reads.values.map(\.continuation))
        }
        failedWriteCount.add(UInt64(writes.count), ordering: .relaxed)
        for continuation in writes { continuation.resume(throwing: error) }
        for continuation in reads { continuation.resume(throwing: error) }
    }
}
