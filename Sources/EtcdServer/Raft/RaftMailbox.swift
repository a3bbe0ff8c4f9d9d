import DequeModule
import EtcdCommon
import Synchronization

/// A write waiting to be proposed: its request ID and the encoded log entry.
struct QueuedProposal: Sendable {
    var id: UInt64
    var data: [UInt8]
}

/// What the Raft loop takes in one go: proposals, linearizable reads waiting for a read index,
/// and whether a tick is due.
struct MailboxWork: Sendable {
    var proposals: [QueuedProposal] = []
    var reads: [UInt64] = []
    var tick = false
}

/// The hand-off between request handlers and the ticker (many tasks) and the Raft loop (one
/// task). Everything that piles up while the loop is busy (an fsync, an apply) is taken at once,
/// which is what batches many writes into one WAL sync and many reads into one ReadIndex round.
///
/// Bounded by the callers: `PendingRequests` refuses a request before it is queued once too many
/// are waiting. Ticks do not pile up: like Go's time.Ticker that etcd uses, a tick that finds
/// one still pending is dropped.
final class RaftMailbox: Sendable {
    private struct State {
        var proposals: Deque<QueuedProposal> = []
        var reads: [UInt64] = []
        var tick = false
        var waitingConsumer: CheckedContinuation<Void, Never>?
        var closed = false

        var isEmpty: Bool { proposals.isEmpty && reads.isEmpty && !tick }
    }

    private let state = Mutex(State())

    func submit(_ proposal: QueuedProposal) throws(EtcdError) {
        try deliver { (state) throws(EtcdError) in state.proposals.append(proposal) }
    }

    func submitRead(_ id: UInt64) throws(EtcdError) {
        try deliver { (state) throws(EtcdError) in state.reads.append(id) }
    }

    func tick() {
        try? deliver { (state) throws(EtcdError) in state.tick = true }
    }

    private func deliver(_ body: (inout State) throws(EtcdError) -> Void) throws(EtcdError) {
        let consumer: CheckedContinuation<Void, Never>? = try state.withLock { (state) throws(EtcdError) in
            if state.closed { throw .stopped }
            try body(&state)
            defer { state.waitingConsumer = nil }
            return state.waitingConsumer
        }
        consumer?.resume()
    }

    /// Waits for work and takes all of it (proposals up to `maxProposals`); nil once closed and
    /// drained.
    func next(maxProposals: Int) async -> MailboxWork? {
        while true {
            enum Step { case work(MailboxWork), finished, wait }
            let step: Step = state.withLock { state in
                if !state.isEmpty {
                    var work = MailboxWork(reads: state.reads, tick: state.tick)
                    let count = min(maxProposals, state.proposals.count)
                    work.proposals = Array(state.proposals.prefix(count))
                    state.proposals.removeFirst(count)
                    state.reads.removeAll(keepingCapacity: true)
                    state.tick = false
                    return .work(work)
                }
                return state.closed ? .finished : .wait
            }
            switch step {
            case .work(let work): return work
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state in
                        if !state.isEmpty || state.closed { return true }
                        precondition(state.waitingConsumer == nil, "raft mailbox has two consumers")
                        state.waitingConsumer = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Refuses new work; what is queued is still handed out.
    func close() {
        let consumer = state.withLock { state in
            state.closed = true
            defer { state.waitingConsumer = nil }
            return state.waitingConsumer
        }
        consumer?.resume()
    }
}
