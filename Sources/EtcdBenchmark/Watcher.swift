import EtcdAPI
import Foundation
import GRPCCore
import Synchronization

/// What a watch stream has seen so far. Written from the stream's response handler and read by the
/// command, possibly after the stream was cancelled, hence shared and locked (one uncontended lock
/// per received response).
final class WatchStreamState: Sendable {
    /// Watchers on this stream whose `created` response has arrived.
    let created = Atomic<Int>(0)
    /// Events received on this stream, over all its watchers.
    let events = Atomic<Int>(0)
    /// `canceled` responses: the server dropped a watcher it had created.
    let canceled = Atomic<Int>(0)
    /// When the last event arrived (monotonic nanoseconds).
    let lastEventNanoseconds = Atomic<UInt64>(0)
    /// Create-request send times, in order; `created` responses come back in the same order.
    let createSentNanoseconds = Mutex<[UInt64]>([])
    /// Latency from sending each create request to its `created` response.
    let creation = Mutex(LatencyRecorder())
    /// Latency from each put's start (carried in the value) to the event's arrival, one recorder
    /// per event class (watch-mixed tells distinct-key events from hot-prefix ones; the others
    /// have one class).
    let eventLatency: Mutex<[LatencyRecorder]>
    /// Why the stream ended early, if it did.
    let failure = Mutex<String?>(nil)

    init(eventClasses: Int = 1) {
        precondition(eventClasses >= 1, "a stream needs at least one event class, got \(eventClasses)")
        eventLatency = Mutex([LatencyRecorder](repeating: LatencyRecorder(), count: eventClasses))
    }
}

/// Sorts an event, by its key, into one of the stream state's event classes.
typealias EventClassifier = @Sendable (_ key: Data) -> Int

/// Runs one Watch stream that creates a watcher for each of `keys`, then records what arrives
/// until the task is cancelled. With `valueCarriesStart`, each event's value starts with the
/// put's start time (watch-latency), and its latency is recorded.
func runWatchStream(
    client: Etcdserverpb_Watch.Client<Connections.Transport>,
    metadata: Metadata,
    keys: [[UInt8]],
    valueCarriesStart: Bool,
    state: WatchStreamState
) async {
    let creates = keys.map { key -> Etcdserverpb_WatchCreateRequest in
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(key)
        return create
    }
    let oneClass: EventClassifier = { _ in 0 }
    await runWatchStream(
        client: client,
        metadata: metadata,
        creates: creates,
        eventClass: valueCarriesStart ? oneClass : nil,
        state: state
    )
}

/// Runs one Watch stream that sends `creates` in order, then records what arrives until the task
/// is cancelled. With an `eventClass`, every event's value must start with its put's start time,
/// and the put→event latency goes to the recorder of the class the classifier picks.
func runWatchStream(
    client: Etcdserverpb_Watch.Client<Connections.Transport>,
    metadata: Metadata,
    creates: [Etcdserverpb_WatchCreateRequest],
    eventClass: EventClassifier?,
    state: WatchStreamState
) async {
    let requests = creates.map { create -> Etcdserverpb_WatchRequest in
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }
    do {
        try await client.watch(
            metadata: metadata,
            requestProducer: { writer in
                for request in requests {
                    state.createSentNanoseconds.withLock { $0.append(ProcessClock.nowNanoseconds()) }
                    try await writer.write(request)
                }
                // Keep the request side open: the watchers live as long as the stream does.
                try await Task.sleep(for: .seconds(86_400))
            },
            onResponse: { response in
                for try await message in response.messages {
                    receive(message, eventClass: eventClass, state: state)
                }
            }
        )
    } catch {
        if !Task.isCancelled {
            state.failure.withLock { $0 = describe(error) }
        }
    }
}

private func receive(_ message: Etcdserverpb_WatchResponse, eventClass: EventClassifier?, state: WatchStreamState) {
    let now = ProcessClock.nowNanoseconds()
    if message.created {
        let index = state.created.add(1, ordering: .relaxed).oldValue
        let sent = state.createSentNanoseconds.withLock { index < $0.count ? $0[index] : now }
        state.creation.withLock { $0.record(nanoseconds: now &- sent) }
    }
    if message.canceled {
        state.canceled.add(1, ordering: .relaxed)
        if !message.cancelReason.isEmpty {
            state.failure.withLock { $0 = message.cancelReason }
        }
    }
    guard !message.events.isEmpty else { return }
    state.events.add(message.events.count, ordering: .relaxed)
    state.lastEventNanoseconds.store(now, ordering: .relaxed)
    guard let eventClass else { return }
    state.eventLatency.withLock { recorders in
        for event in message.events {
            guard let start = PutStamp.read(event.kv.value) else { continue }
            recorders[eventClass(event.kv.key)].record(nanoseconds: now > start ? now - start : 0)
        }
    }
}

/// The put's start time, little-endian in a value's first 8 bytes.
enum PutStamp {
    static let length = 8

    static func write(_ nanoseconds: UInt64, into value: inout [UInt8]) {
        for index in 0..<length {
            value[index] = UInt8(truncatingIfNeeded: nanoseconds >> (8 * UInt64(index)))
        }
    }

    static func read(_ value: some Collection<UInt8>) -> UInt64? {
        guard value.count >= length else { return nil }
        var result: UInt64 = 0
        for (index, byte) in value.prefix(length).enumerated() {
            result |= UInt64(byte) << (8 * UInt64(index))
        }
        return result
    }
}
