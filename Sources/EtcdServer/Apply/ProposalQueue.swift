import DequeModule
import EtcdAPI
import EtcdCommon
import EtcdReplica
import Synchronization

/// A mutating request waiting for the apply loop, with the caller to resume once it is applied.
struct Proposal: Sendable {
    var request: Etcdserverpb_InternalRaftRequest
    var continuation: CheckedContinuation<ApplyResponse, any Error>
}

/// The bounded hand-off between request handlers (many tasks) and the apply loop (one task).
///
/// Handlers never wait for room: past `capacity` a proposal is refused at once with etcd's
/// "too many requests", which is what etcd answers when apply falls behind commit.
final class ProposalQueue: Sendable {
    private struct State {
        var pending: Deque<Proposal> = []
        var waitingConsumer: CheckedContinuation<Void, Never>?
        var closed = false
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0, "proposal queue capacity must be positive, got \(capacity)")
        self.capacity = capacity
    }

    /// Queues a proposal, or refuses it (too many pending, or the server is stopping).
    func submit(_ proposal: Proposal) throws(EtcdError) {
        let consumer: CheckedContinuation<Void, Never>? = try state.withLock { (state) throws(EtcdError) in
            if state.closed { throw .stopped }
            if state.pending.count >= capacity { throw .tooManyRequests }
            state.pending.append(proposal)
            defer { state.waitingConsumer = nil }
            return state.waitingConsumer
        }
        consumer?.resume()
    }

    /// Waits for at least one proposal and takes up to `maxCount`; nil once closed and drained.
    func nextBatch(maxCount: Int) async -> [Proposal]? {
        while true {
            enum Step { case batch([Proposal]), finished, wait }
            let step: Step = state.withLock { state in
                if !state.pending.isEmpty {
                    let count = min(maxCount, state.pending.count)
                    let batch = Array(state.pending.prefix(count))
                    state.pending.removeFirst(count)
                    return .batch(batch)
                }
                return state.closed ? .finished : .wait
            }
            switch step {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state in
                        if !state.pending.isEmpty || state.closed { return true }
                        precondition(state.waitingConsumer == nil, "proposal queue has two consumers")
                        state.waitingConsumer = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// Refuses new proposals; those already queued are still handed out.
    func close() {
        let consumer = state.withLock { state in
            state.closed = true
            defer { state.waitingConsumer = nil }
            return state.waitingConsumer
        }
        consumer?.resume()
    }
}
