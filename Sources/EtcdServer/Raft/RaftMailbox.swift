import DequeModule
import EtcdCommon
import EtcdRaft
import NIOConcurrencyHelpers
import Synchronization

/// A write waiting to be proposed: its request ID and the encoded log entry.
struct QueuedProposal: Sendable {
    var id: UInt64
    var data: [UInt8]
    /// Set for a membership change: proposed as Raft's configuration change (with `data` empty).
    var confChange: ConfChange? = nil
}

/// Work for the Raft loop that comes from the cluster rather than from clients.
enum PeerEvent: Sendable {
    /// Messages a peer sent.
    case messages([Message])
    /// The leader's snapshot message, once its backend image is stored at the path.
    case snapshot(Message, imagePath: String)
    /// The last message to this peer could not be delivered.
    case unreachable(NodeID)
    /// How sending a snapshot to this peer ended.
    case snapshotStatus(NodeID, SnapshotStatus)
    /// A client asked this member (the leader) to hand leadership to another.
    case transferLeadership(NodeID)
}

/// What the Raft loop takes in one go: proposals, linearizable reads waiting for a read index,
/// what peers sent, and whether a tick is due.
struct MailboxWork: Sendable {
    var proposals: [QueuedProposal] = []
    var reads: [UInt64] = []
    var peerEvents: [PeerEvent] = []
    var tick = false
}

/// The hand-off between request handlers and the ticker (many tasks) and the Raft loop (one
/// thread). Everything that piles up while the loop is busy (an fsync, an apply) is taken at once,
/// which is what batches many writes into one WAL sync and many reads into one ReadIndex round.
///
/// The loop waits on a condition variable rather than as an async task: a waiting task would cost
/// two more thread switches per Ready cycle (wake the task, then hop to the loop's thread).
///
/// Bounded by the callers: `PendingRequests` refuses a request before it is queued once too many
/// are waiting. Ticks do not pile up: like Go's time.Ticker that etcd uses, a tick that finds
/// one still pending is dropped.
final class RaftMailbox: Sendable {
    private struct State {
        var proposals: Deque<QueuedProposal> = []
        var reads: [UInt64] = []
        var peerEvents: [PeerEvent] = []
        /// Messages among `peerEvents`, bounded so that a flood from peers cannot grow memory
        /// while the loop is busy: Raft retransmits whatever is dropped.
        var peerMessageCount = 0
        var tick = false
        /// The applier has news for the loop (see `nudge`).
        var nudged = false
        var closed = false
        /// Steps peer messages on the delivering thread when the loop is idle (see
        /// `takePeerMessagesDirectly`).
        var directReceiver: (@Sendable ([Message]) -> Bool)?

        var isEmpty: Bool { proposals.isEmpty && reads.isEmpty && peerEvents.isEmpty && !tick && !nudged }
    }

    /// Most peer messages waiting for the loop (etcd's per-peer receive buffer is 4,096).
    static let peerMessageLimit = 16_384

    private let state = Mutex(State())
    /// True when something may have been delivered since the loop last looked.
    private let signal = ConditionLock(value: false)

    func submit(_ proposal: QueuedProposal) throws(EtcdError) {
        try deliver { (state) throws(EtcdError) in state.proposals.append(proposal) }
    }

    func submitRead(_ id: UInt64) throws(EtcdError) {
        try deliver { (state) throws(EtcdError) in state.reads.append(id) }
    }

    func tick() {
        try? deliver { (state) throws(EtcdError) in state.tick = true }
    }

    /// Wakes the loop without work from outside: the applier has applied something the loop
    /// waits for, or has failed. The loop looks at the applier on every round.
    func nudge() {
        try? deliver { (state) throws(EtcdError) in state.nudged = true }
    }

    /// Lets `receiver` take peer messages before they are queued, while no earlier peer event
    /// waits (so that a connection's messages keep their order); it returns false for those it
    /// leaves to the queue.
    func takePeerMessagesDirectly(_ receiver: @escaping @Sendable ([Message]) -> Bool) {
        state.withLock { $0.directReceiver = receiver }
    }

    /// Hands what a peer sent (or what the transport learned) to the loop; dropped when the loop
    /// is stopped or too many peer messages wait already.
    func deliverFromPeers(_ event: PeerEvent) {
        if case .messages(let messages) = event,
            let receiver = state.withLock({ $0.closed || !$0.peerEvents.isEmpty ? nil : $0.directReceiver }),
            receiver(messages)
        {
            return
        }
        try? deliver { (state) throws(EtcdError) in
            if case .snapshot = event {
                state.peerEvents.append(event)
                return
            }
            if case .messages(let messages) = event {
                guard state.peerMessageCount + messages.count <= Self.peerMessageLimit else { return }
                state.peerMessageCount += messages.count
            }
            state.peerEvents.append(event)
        }
    }

    private func deliver(_ body: (inout State) throws(EtcdError) -> Void) throws(EtcdError) {
        try state.withLock { (state) throws(EtcdError) in
            if state.closed { throw .stopped }
            try body(&state)
        }
        wake()
    }

    private func wake() {
        signal.lock()
        signal.unlock(withValue: true)
    }

    /// Blocks the calling thread until there is work, and takes all of it (proposals up to
    /// `maxProposals`); nil once closed and drained. For the loop's own thread only.
    func nextBlocking(maxProposals: Int) -> MailboxWork? {
        while true {
            enum Step { case work(MailboxWork), finished, wait }
            let step: Step = state.withLock { state in
                if !state.isEmpty {
                    var work = MailboxWork(reads: state.reads, peerEvents: state.peerEvents, tick: state.tick)
                    state.peerEvents.removeAll(keepingCapacity: true)
                    state.peerMessageCount = 0
                    let count = min(maxProposals, state.proposals.count)
                    work.proposals = Array(state.proposals.prefix(count))
                    state.proposals.removeFirst(count)
                    state.reads.removeAll(keepingCapacity: true)
                    state.tick = false
                    state.nudged = false
                    return .work(work)
                }
                return state.closed ? .finished : .wait
            }
            switch step {
            case .work(let work): return work
            case .finished: return nil
            case .wait:
                // A delivery after the check above set the signal (or will), so this cannot
                // sleep through it; a stale signal only costs one more look.
                signal.lock(whenValue: true)
                signal.unlock(withValue: false)
            }
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Refuses new work; what is queued is still handed out.
    func close() {
        state.withLock {
            $0.closed = true
            $0.directReceiver = nil
        }
        wake()
    }
}
