import DequeModule
import EtcdAPI
import EtcdMVCC
import EtcdReplica
import Foundation
import Synchronization

/// A watcher's identity: the stream it lives on and its ID there (IDs are per stream, as in etcd).
struct WatcherKey: Hashable, Sendable {
    var stream: UInt64
    var watchID: Int64
}

/// One message waiting in a stream's outbox, turned into a `WatchResponse` by the stream's sender
/// (which adds previous values and splits fragments outside the hub's lock).
enum OutgoingWatchMessage: Sendable {
    /// created, canceled, compaction and progress responses: complete but for the header's
    /// cluster, member and term.
    case control(Etcdserverpb_WatchResponse)
    /// Events for one watcher: whole revisions, in order, already in wire form (a revision's events
    /// are converted once and shared by every watcher that gets all of them). `headerRevision` is
    /// the response header's revision (the revision published, or the current one for history).
    /// `encoded` is the events' encoding when it was made once for all the watchers of a revision.
    case events(
        watchID: Int64, headerRevision: Int64, events: [Mvccpb_Event], encoded: [UInt8]?, prevKV: Bool, fragment: Bool)

    /// What the outbox counts against its limit: roughly the bytes the message will take.
    var estimatedBytes: Int {
        switch self {
        case .control: return 64
        case .events(_, _, let events, _, _, _):
            return events.reduce(64) { $0 + $1.kv.key.count + $1.kv.value.count + 48 }
        }
    }

    /// An event as the Watch API sends it.
    static func wire(_ event: MVCCEvent) -> Mvccpb_Event {
        var wire = Mvccpb_Event()
        wire.type = event.kind == .put ? .put : .delete
        wire.kv = Mvccpb_KeyValue(event.kv)
        return wire
    }

    static func wire(_ events: [MVCCEvent]) -> [Mvccpb_Event] {
        events.map { wire($0) }
    }
}

/// How much a stream may hold for a client that does not read fast enough.
struct WatchLimits: Sendable {
    /// Most messages waiting in (or being written from) one stream's outbox.
    var maxOutboxMessages = 1_024
    /// Most bytes (estimated) waiting in one stream's outbox. A message is always accepted into an
    /// empty outbox, so a single large revision still goes out.
    var maxOutboxBytes = 4 << 20
    /// Most events read from the backend in one catch-up round (whole revisions; a single revision
    /// with more changes is read whole).
    var catchUpBatchEvents = 1_000
    /// Most bytes of keys and values in one catch-up round (again whole revisions). This also
    /// bounds the responses catch-up sends, which etcd does not: gRPC clients other than Go's
    /// refuse messages over 4 MiB by default.
    var catchUpBatchBytes = 3 << 20
    /// How often catch-up looks again for watchers that could not be served (their stream was
    /// full), in addition to being woken whenever there is new work for it.
    var catchUpRetryInterval: Duration = .milliseconds(100)
}

/// Every watcher of the member, on every stream: matches each applied revision to its watchers,
/// serves watchers that start in the past (or fell behind) from the backend, and keeps one bounded
/// outbox per stream.
///
/// The Raft loop calls ``publish(_:)`` with each applied revision's changes, before it answers the
/// writers, so a watch created after a write's response never sees that write (as in etcd).
/// A synced watcher's events go straight into its stream's outbox. When an outbox is full, its
/// watcher is moved to catch-up instead of queueing more (etcd's victims, but without keeping
/// their events in memory): ``runCatchUp()`` reads history from the backend in bounded batches,
/// outside the hub's lock, and hands it over once the stream has room. Nothing here grows
/// without bound: outboxes are limited, and history stays in the backend until it is sent.
///
/// One lock covers the watcher groups and the outboxes, so that a message's place in its outbox
/// always agrees with the revision bookkeeping (a watcher's events are queued in revision order,
/// and a progress response follows every event it vouches for).
final class WatchHub: Sendable {
    private let state: Mutex<HubState>
    private let replica: ReplicaHandle
    let limits: WatchLimits
    private let catchUpSignal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    init(currentRevision: Int64, replica: ReplicaHandle, limits: WatchLimits = WatchLimits()) {
        self.state = Mutex(HubState(groups: WatchGroups(currentRevision: currentRevision)))
        self.replica = replica
        self.limits = limits
    }

    // MARK: Feeding revisions

    /// Hands the changes of newly applied revisions (oldest first) to the synced watchers.
    func publish(_ changes: [RevisionChanges]) {
        guard !changes.isEmpty else { return }
        let (woken, demoted) = state.withLock { state in
            var woken: [CheckedContinuation<Void, Never>] = []
            var demoted = false
            for change in changes {
                let deliveries = state.groups.publish(revision: change.revision, events: change.events)
                guard !deliveries.isEmpty else { continue }
                let whole = OutgoingWatchMessage.wire(change.events)
                let wholeEncoded = WatchWire.encode(whole)
                for delivery in deliveries {
                    let isWhole = delivery.events.count == change.events.count
                    let outcome = state.deliver(
                        delivery, events: isWhole ? whole : OutgoingWatchMessage.wire(delivery.events),
                        encoded: isWhole ? wholeEncoded : nil, headerRevision: change.revision,
                        firstRevision: change.revision, limits: limits)
                    if let waiter = outcome.woken { woken.append(waiter) }
                    demoted = demoted || outcome.demoted
                }
            }
            return (woken, demoted)
        }
        for waiter in woken { waiter.resume() }
        if demoted { catchUpSignal.continuation.yield() }
    }

    /// The replica's store was replaced by a snapshot from the leader at `revision`: watchers
    /// catch up from the new store (or are cancelled as compacted if their history is gone).
    func restore(currentRevision revision: Int64) {
        state.withLock { $0.groups.restore(currentRevision: revision) }
        catchUpSignal.continuation.yield()
    }

    /// The newest revision the watchers have been handed.
    var currentRevision: Int64 { state.withLock { $0.groups.currentRevision } }

    /// Watchers registered and how many of them wait for history (for tests and metrics).
    var counts: (watchers: Int, unsynced: Int, streams: Int) {
        state.withLock { ($0.groups.count, $0.groups.unsyncedCount, $0.streams.count) }
    }

    // MARK: Streams

    /// Opens a stream's outbox and returns its ID.
    func openStream() -> UInt64 {
        state.withLock { state in
            let id = state.nextStreamID
            state.nextStreamID += 1
            state.streams[id] = StreamState()
            return id
        }
    }

    /// Removes a stream and all its watchers (the client went away or the server stops).
    func closeStream(_ stream: UInt64) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard let removed = state.streams.removeValue(forKey: stream) else { return [] }
            for watchID in removed.watchers.keys {
                state.groups.remove(WatcherKey(stream: stream, watchID: watchID))
            }
            return [removed.sender, removed.receiver].compactMap { $0 }
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Ends every stream's sender: the server is shutting down.
    func closeAllStreams() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var waiters: [CheckedContinuation<Void, Never>] = []
            for id in Array(state.streams.keys) {
                state.streams[id]?.closed = true
                if let sender = state.streams[id]?.takeSender() { waiters.append(sender) }
                if let receiver = state.streams[id]?.takeReceiver() { waiters.append(receiver) }
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
        catchUpSignal.continuation.finish()
    }

    // MARK: Requests

    /// etcd's create request: registers the watcher and queues the `created` response (or a
    /// created-and-canceled one saying why it could not be created).
    func create(on stream: UInt64, _ request: Etcdserverpb_WatchCreateRequest) {
        // etcd reads an empty key as "\0" (the smallest key), and range_end "\0" as "every key
        // from key on".
        let key = request.key.isEmpty ? [UInt8(0)] : [UInt8](request.key)
        let range = KeyRange(key: key, rangeEnd: [UInt8](request.rangeEnd))
        let skipsPuts = request.filters.contains(.noput)
        let skipsDeletes = request.filters.contains(.nodelete)
        let (waiter, needsCatchUp) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
            // Taken out while it changes, so that its outbox is not copied (copy on write).
            guard var entry = state.streams.removeValue(forKey: stream) else { return (nil, false) }
            let current = state.groups.currentRevision
            var response = Etcdserverpb_WatchResponse()
            response.header.revision = current
            response.created = true
            var needsCatchUp = false
            if case .range(let start, let end) = range, !start.lexicographicallyPrecedes(end) {
                response.watchID = -1
                response.canceled = true
                response.cancelReason = WatchError.emptyRange
            } else if let id = entry.assignID(requested: request.watchID) {
                let key = WatcherKey(stream: stream, watchID: id)
                let added = state.groups.add(
                    key, range: range, startRevision: request.startRevision, skipsPuts: skipsPuts,
                    skipsDeletes: skipsDeletes)
                precondition(added, "watch \(id) on stream \(stream) was refused after its ID was checked")
                entry.watchers[id] = WatcherSettings(
                    prevKV: request.prevKv, fragment: request.fragment, progressNotify: request.progressNotify)
                response.watchID = id
                needsCatchUp = !state.groups.isSynced(key)
            } else {
                response.watchID = -1
                response.canceled = true
                response.cancelReason = WatchError.duplicateID
            }
            entry.enqueue(.control(response))
            let waiter = entry.takeSender()
            state.streams[stream] = entry
            return (waiter, needsCatchUp)
        }
        waiter?.resume()
        if needsCatchUp { catchUpSignal.continuation.yield() }
    }

    /// A create request refused before any watcher was made (its caller may not read the
    /// range): answered as etcd answers it, created and canceled at once, with watch ID -1 and
    /// the refusal as the reason.
    func refuseCreate(on stream: UInt64, reason: String) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.streams[stream] != nil else { return nil }
            var response = Etcdserverpb_WatchResponse()
            response.header.revision = state.groups.currentRevision
            response.watchID = -1
            response.created = true
            response.canceled = true
            response.cancelReason = reason
            state.streams[stream]?.enqueue(.control(response))
            return state.streams[stream]?.takeSender()
        }
        waiter?.resume()
    }

    /// etcd's cancel request: a known watcher is removed and answered with `canceled`; an unknown
    /// ID gets no answer (as etcd).
    func cancel(on stream: UInt64, watchID: Int64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.streams[stream]?.watchers.removeValue(forKey: watchID) != nil else { return nil }
            state.groups.remove(WatcherKey(stream: stream, watchID: watchID))
            var response = Etcdserverpb_WatchResponse()
            response.header.revision = state.groups.currentRevision
            response.watchID = watchID
            response.canceled = true
            state.streams[stream]?.enqueue(.control(response))
            return state.streams[stream]?.takeSender()
        }
        waiter?.resume()
    }

    /// etcd's progress request: answered (watch ID -1, the current revision) once every watcher on
    /// the stream has been handed everything up to that revision; until then it waits, and
    /// requests made while one waits are answered by the same response.
    func requestProgress(on stream: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.streams[stream] != nil else { return nil }
            state.streams[stream]?.progressRequested = true
            return state.answerProgressIfSynced(stream)
        }
        waiter?.resume()
    }

    /// The periodic progress notification (`--experimental-watch-progress-notify-interval`): each
    /// synced watcher that asked for them and was sent no events since the previous tick gets an
    /// empty response carrying the current revision.
    func progressTick(on stream: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard var entry = state.streams.removeValue(forKey: stream) else { return nil }
            let current = state.groups.currentRevision
            var queued = false
            for (watchID, settings) in entry.watchers.sorted(by: { $0.key < $1.key }) where settings.progressNotify {
                if settings.quietSinceTick, state.groups.isSynced(WatcherKey(stream: stream, watchID: watchID)) {
                    var response = Etcdserverpb_WatchResponse()
                    response.header.revision = current
                    response.watchID = watchID
                    entry.enqueue(.control(response))
                    queued = true
                }
                entry.watchers[watchID]?.quietSinceTick = true
            }
            let waiter = queued ? entry.takeSender() : nil
            state.streams[stream] = entry
            return waiter
        }
        waiter?.resume()
    }

    // MARK: Sending

    /// Waits until the stream has messages and takes them all (the sender writes them, then comes
    /// back: until then they still count against the outbox's limits). Nil once the stream is
    /// closed or the calling task is cancelled.
    func nextMessages(on stream: UInt64) async -> Deque<OutgoingWatchMessage>? {
        var signalCatchUp = false
        defer { if signalCatchUp { catchUpSignal.continuation.yield() } }
        while true {
            enum Step {
                case messages(Deque<OutgoingWatchMessage>)
                case closed
                case wait
            }
            let step = state.withLock { state -> Step in
                guard var entry = state.streams.removeValue(forKey: stream) else { return .closed }
                defer { state.streams[stream] = entry }
                if entry.closed { return .closed }
                // What the sender took last time has been written: it no longer counts.
                entry.inFlightBytes = 0
                entry.inFlightMessages = 0
                if entry.starved {
                    entry.starved = false
                    signalCatchUp = true
                }
                let step: Step
                if entry.outbox.isEmpty {
                    step = .wait
                } else {
                    let taken = entry.outbox
                    entry.outbox = Deque(minimumCapacity: taken.count)
                    entry.inFlightBytes = entry.outboxBytes
                    entry.inFlightMessages = taken.count
                    entry.outboxBytes = 0
                    step = .messages(taken)
                }
                entry.takeReceiver()?.resume()
                return step
            }
            switch step {
            case .messages(let messages): return messages
            case .closed: return nil
            case .wait:
                if Task.isCancelled { return nil }
                if signalCatchUp {
                    signalCatchUp = false
                    catchUpSignal.continuation.yield()
                }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state -> Bool in
                            guard let entry = state.streams[stream], !entry.closed, entry.outbox.isEmpty else { return true }
                            state.streams[stream]?.sender = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = state.withLock { $0.streams[stream]?.takeSender() }
                    waiter?.resume()
                }
                if Task.isCancelled { return nil }
            }
        }
    }

    /// Waits until the stream's outbox has room for another control message, so that a client that
    /// sends requests but reads no responses is slowed down (its requests stay unread) instead of
    /// growing the outbox.
    func waitForRoom(on stream: UInt64) async {
        while true {
            let full = state.withLock { state -> Bool in
                guard let entry = state.streams[stream], !entry.closed else { return false }
                return entry.outbox.count + entry.inFlightMessages >= limits.maxOutboxMessages
            }
            guard full, !Task.isCancelled else { return }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        guard let entry = state.streams[stream], !entry.closed,
                            entry.outbox.count + entry.inFlightMessages >= limits.maxOutboxMessages
                        else { return true }
                        state.streams[stream]?.receiver = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { $0.streams[stream]?.takeReceiver() }
                waiter?.resume()
            }
        }
    }

    /// The previous version of each event's key (etcd's `prev_kv`: the key read at the revision
    /// before the event), for the events that are not creations; nil where history is compacted.
    func previousValues(for events: [Mvccpb_Event]) -> [KeyValue?] {
        // A failed member shows nothing of its (possibly rolled back) store; its streams are
        // being closed.
        let values = try? replica.read { replica in
            events.map { event -> KeyValue? in
                if event.type == .put && event.kv.createRevision == event.kv.modRevision { return nil }
                let options = RangeOptions(limit: 1, revision: event.kv.modRevision - 1)
                return (try? replica.store.range(.key([UInt8](event.kv.key)), options: options))?.kvs.first
            }
        }
        return values ?? events.map { _ in nil }
    }

    // MARK: Catch-up

    /// Serves watchers that need history, until the hub is shut down: woken whenever a watcher
    /// starts in the past, is moved to catch-up, or its stream drains, and every retry interval
    /// while some wait.
    func runCatchUp() async {
        let signals = catchUpSignal.stream
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [limits, catchUpSignal] in
                // Retries watchers whose streams were full when catch-up last looked.
                while !Task.isCancelled {
                    try? await Task.sleep(for: limits.catchUpRetryInterval)
                    if self.counts.unsynced > 0 { catchUpSignal.continuation.yield() }
                }
            }
            for await _ in signals {
                // Each round blocks its thread on the backend for one batch; yielding between
                // rounds keeps a long catch-up from holding a thread of the shared pool.
                while catchUpRound() { await Task.yield() }
            }
            group.cancelAll()
        }
    }

    /// One catch-up round: picks the earliest revision needed by a watcher whose stream has room,
    /// reads a batch of history from there (outside the hub's lock), and hands it over. Returns
    /// whether it did anything (another round may have more to do).
    @discardableResult
    func catchUpRound() -> Bool {
        let plan = state.withLock { state -> (start: Int64, through: Int64)? in
            let ready = state.streamsWithRoom(limits)
            guard let start = state.groups.catchUpStart(where: { ready.contains($0.stream) }) else { return nil }
            return (start, state.groups.currentRevision)
        }
        guard let plan else { return false }
        let history = readHistory(from: plan.start, through: plan.through)
        var woken: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            switch history {
            case .compacted(let compactRevision):
                for key in state.groups.removeCompacted(below: compactRevision) {
                    // etcd's compaction cancel: watch ID, canceled, compact_revision, header
                    // revision 0. The ID stays taken on its stream until the client cancels it.
                    var response = Etcdserverpb_WatchResponse()
                    response.watchID = key.watchID
                    response.canceled = true
                    response.compactRevision = compactRevision
                    state.streams[key.stream]?.enqueue(.control(response))
                    if let waiter = state.streams[key.stream]?.takeSender() { woken.append(waiter) }
                }
            case .events(let events, let through):
                let ready = state.streamsWithRoom(limits)
                let current = state.groups.currentRevision
                let deliveries = state.groups.catchUp(
                    events: events, from: plan.start, through: through, where: { ready.contains($0.stream) })
                for delivery in deliveries {
                    let outcome = state.deliver(
                        delivery, events: OutgoingWatchMessage.wire(delivery.events), encoded: nil,
                        headerRevision: current, firstRevision: delivery.events[0].kv.modRevision, limits: limits)
                    if let waiter = outcome.woken { woken.append(waiter) }
                }
            case .failed:
                return
            }
            for stream in Array(state.streams.keys) where state.streams[stream]?.progressRequested == true {
                if let waiter = state.answerProgressIfSynced(stream) { woken.append(waiter) }
            }
        }
        for waiter in woken { waiter.resume() }
        if case .failed = history { return false }
        return true
    }

    enum History: Sendable {
        case events([MVCCEvent], through: Int64)
        case compacted(Int64)
        case failed
    }

    /// Events from `start` through at most `through`, whole revisions only, at most about one
    /// batch; under the replica's lock, so compaction cannot remove them halfway.
    private func readHistory(from start: Int64, through: Int64) -> History {
        let batch = limits.catchUpBatchEvents
        let history = try? replica.read { replica -> History in
            let store = replica.store
            if start < store.compactMainRevision { return .compacted(store.compactMainRevision) }
            do throws(MVCCError) {
                let events = try store.events(from: start, through: through, limit: batch + 1)
                // Cut where the batch would exceed its byte budget, or where the read stopped
                // inside a revision (past the event limit): keep whole revisions only.
                var cut: Int64?
                var bytes = 0
                for event in events {
                    bytes += event.kv.key.count + event.kv.value.count
                    if bytes > limits.catchUpBatchBytes {
                        cut = event.kv.modRevision
                        break
                    }
                }
                if events.count > batch, let last = events.last?.kv.modRevision { cut = min(cut ?? last, last) }
                guard let cut else { return .events(events, through: through) }
                if cut > start {
                    return .events(events.filter { $0.kv.modRevision < cut }, through: cut - 1)
                }
                // The first revision alone is over the budget: it goes whole.
                return .events(try store.events(from: start, through: start), through: start)
            } catch {
                if case .compacted = error { return .compacted(store.compactMainRevision) }
                return .failed
            }
        }
        // Nothing is read from a failed member's store (see `ReplicaHandle.read`).
        return history ?? .failed
    }
}

/// What the stream remembers about one of its watchers.
struct WatcherSettings: Sendable {
    var prevKV: Bool
    var fragment: Bool
    var progressNotify: Bool
    /// No events were queued for the watcher since the last progress tick (etcd's progress map).
    var quietSinceTick = true
}

/// One stream's outbox and watch IDs.
struct StreamState {
    var outbox = Deque<OutgoingWatchMessage>()
    var outboxBytes = 0
    /// What the sender took and is writing: still counted against the limits.
    var inFlightBytes = 0
    var inFlightMessages = 0
    /// The sender waiting for messages.
    var sender: CheckedContinuation<Void, Never>?
    /// The request reader waiting for room.
    var receiver: CheckedContinuation<Void, Never>?
    /// Watch IDs in use on this stream. As in etcd, a watcher cancelled because its history was
    /// compacted keeps its ID until the client cancels it.
    var watchers: [Int64: WatcherSettings] = [:]
    var nextAutoID: Int64 = 0
    /// A progress request waits for every watcher to be synced.
    var progressRequested = false
    /// A watcher was moved to catch-up because the outbox was full: catch-up is woken when the
    /// sender drains it.
    var starved = false
    var closed = false

    /// A client-chosen ID if free, or (for 0, etcd's "choose for me") the next free one from 0.
    mutating func assignID(requested: Int64) -> Int64? {
        if requested != 0 { return watchers[requested] == nil ? requested : nil }
        while watchers[nextAutoID] != nil { nextAutoID += 1 }
        defer { nextAutoID += 1 }
        return nextAutoID
    }

    func hasRoom(for bytes: Int, _ limits: WatchLimits) -> Bool {
        let messages = outbox.count + inFlightMessages
        let queuedBytes = outboxBytes + inFlightBytes
        if messages == 0 { return true }
        return messages < limits.maxOutboxMessages && queuedBytes + bytes <= limits.maxOutboxBytes
    }

    mutating func enqueue(_ message: OutgoingWatchMessage) {
        outboxBytes += message.estimatedBytes
        outbox.append(message)
    }

    mutating func takeSender() -> CheckedContinuation<Void, Never>? {
        defer { sender = nil }
        return sender
    }

    mutating func takeReceiver() -> CheckedContinuation<Void, Never>? {
        defer { receiver = nil }
        return receiver
    }
}

/// The hub's state, behind its lock.
struct HubState {
    var groups: WatchGroups<WatcherKey>
    var streams: [UInt64: StreamState] = [:]
    var nextStreamID: UInt64 = 1

    init(groups: WatchGroups<WatcherKey>) {
        self.groups = groups
    }

    /// Streams whose outbox can take another message: their unsynced watchers may be served.
    func streamsWithRoom(_ limits: WatchLimits) -> Set<UInt64> {
        Set(streams.lazy.filter { !$0.value.closed && $0.value.hasRoom(for: 0, limits) }.map(\.key))
    }

    /// Queues one delivery in its stream's outbox, or, if the outbox is full, sends the watcher
    /// back to catch-up from `firstRevision` (the delivery's events will be read again from the
    /// backend when the stream has room).
    mutating func deliver(
        _ delivery: WatchGroups<WatcherKey>.Delivery, events: [Mvccpb_Event], encoded: [UInt8]?,
        headerRevision: Int64, firstRevision: Int64, limits: WatchLimits
    ) -> (woken: CheckedContinuation<Void, Never>?, demoted: Bool) {
        let key = delivery.watcher
        guard let index = streams.index(forKey: key.stream) else { return (nil, false) }
        // One lookup, and the outbox changed in place (this runs for every event delivered).
        func queue(into entry: inout StreamState) -> (woken: CheckedContinuation<Void, Never>?, demoted: Bool) {
            guard let settings = entry.watchers[key.watchID] else { return (nil, false) }
            let message = OutgoingWatchMessage.events(
                watchID: key.watchID, headerRevision: headerRevision, events: events, encoded: encoded,
                prevKV: settings.prevKV, fragment: settings.fragment)
            guard entry.hasRoom(for: message.estimatedBytes, limits) else {
                entry.starved = true
                return (nil, true)
            }
            entry.enqueue(message)
            if settings.progressNotify { entry.watchers[key.watchID]?.quietSinceTick = false }
            return (entry.takeSender(), false)
        }
        let outcome = queue(into: &streams.values[index])
        if outcome.demoted { groups.demote(key, nextRevision: firstRevision) }
        return outcome
    }

    /// Queues the answer to a waiting progress request if every watcher on the stream is synced.
    mutating func answerProgressIfSynced(_ stream: UInt64) -> CheckedContinuation<Void, Never>? {
        guard let entry = streams[stream], entry.progressRequested else { return nil }
        let allSynced = entry.watchers.keys.allSatisfy { watchID in
            let key = WatcherKey(stream: stream, watchID: watchID)
            // A watcher cancelled by compaction is no longer in the groups and waits for nothing.
            return groups.watch(key) == nil || groups.isSynced(key)
        }
        guard allSynced else { return nil }
        var response = Etcdserverpb_WatchResponse()
        response.header.revision = groups.currentRevision
        response.watchID = -1
        streams[stream]?.progressRequested = false
        streams[stream]?.enqueue(.control(response))
        return streams[stream]?.takeSender()
    }
}

/// etcd's texts for watch creation failures (its mvcc package's errors).
enum WatchError {
    static let emptyRange = "mvcc: watcher range is empty"
    static let duplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
}
