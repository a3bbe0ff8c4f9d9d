import EtcdCommon
import EtcdReplica
import Synchronization

/// Every request waiting for the Raft loop: writes until their entry is applied, linearizable
/// reads until their read index is applied. Each has a deadline; the ticker expires overdue ones
/// with "etcdserver: request timed out" even while the loop is stuck (in a slow fsync, say), so
/// no request hangs.
///
/// Also the back-pressure point: past `capacity` waiting writes, new ones are refused at once
/// with "etcdserver: too many requests" (etcd refuses when apply lags commit by 5,000 entries).
final class PendingRequests: Sendable {
    typealias WriteContinuation = CheckedContinuation<ApplyResponse, any Error>
    typealias ReadContinuation = CheckedContinuation<Void, any Error>

    private struct Waiter<Continuation> {
        var continuation: Continuation
        var deadline: ContinuousClock.Instant
    }

    private struct State {
        var writes: [UInt64: Waiter<WriteContinuation>] = [:]
        var reads: [UInt64: Waiter<ReadContinuation>] = [:]
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0, "pending request capacity must be positive, got \(capacity)")
        self.capacity = capacity
    }

    func registerWrite(_ id: UInt64, _ continuation: WriteContinuation, deadline: ContinuousClock.Instant) throws(EtcdError) {
        try state.withLock { (state) throws(EtcdError) in
            if state.writes.count >= capacity { throw .tooManyRequests }
            precondition(state.writes[id] == nil, "request ID \(id) is already waiting")
            state.writes[id] = Waiter(continuation: continuation, deadline: deadline)
        }
    }

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
                state.writes.removeValue(forKey: request.requestID).map { ($0.continuation, request.result) }
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
        let continuations = state.withLock { state in ids.compactMap { state.writes.removeValue(forKey: $0)?.continuation } }
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
            let writes = state.writes.filter { $0.value.deadline <= now }
            let reads = state.reads.filter { $0.value.deadline <= now }
            for id in writes.keys { state.writes[id] = nil }
            for id in reads.keys { state.reads[id] = nil }
            return (writes.values.map(\.continuation), reads.values.map(\.continuation))
        }
        for continuation in writes { continuation.resume(throwing: EtcdError.timeout) }
        for continuation in reads { continuation.resume(throwing: EtcdError.timeout) }
    }

    /// Fails everything still waiting (the member stopped).
    func failAll(with error: any Error) {
        let (writes, reads) = state.withLock { state in
            defer {
                state.writes.removeAll()
                state.reads.removeAll()
            }
            return (state.writes.values.map(\.continuation), state.reads.values.map(\.continuation))
        }
        for continuation in writes { continuation.resume(throwing: error) }
        for continuation in reads { continuation.resume(throwing: error) }
    }
}
