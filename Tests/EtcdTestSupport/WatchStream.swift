public import EtcdAPI
import Foundation
public import GRPCCore
import SwiftProtobuf
import Synchronization

/// One bidirectional Watch RPC driven by a test: requests are sent one at a time with
/// ``send(_:)`` and responses are collected in arrival order, to be taken with a deadline.
///
/// Open one with ``withWatchStream(_:_:)``. etcd keeps a Watch stream open after the client stops
/// sending (it ends only when the client cancels or disconnects), so the scope cancels the RPC
/// when it ends.
public final class WatchStream: Sendable {
    /// One thing the stream delivered.
    public enum Received: Sendable {
        case response(Etcdserverpb_WatchResponse)
        /// The RPC ended, with its status (`ok` or the error's code and message).
        case ended(String)
    }

    private let requests: AsyncStream<Etcdserverpb_WatchRequest>.Continuation
    private let state = Mutex(State())

    private struct State {
        var received: [Received] = []
        /// How many of `received` the test has taken.
        var taken = 0
        var ended = false
    }

    init(requests: AsyncStream<Etcdserverpb_WatchRequest>.Continuation) {
        self.requests = requests
    }

    /// Queues `request` to be written on the stream.
    public func send(_ request: Etcdserverpb_WatchRequest) {
        requests.yield(request)
    }

    /// Whether the RPC has ended.
    public var hasEnded: Bool { state.withLock { $0.ended } }

    /// Waits until `count` more messages have arrived, the RPC ends, or `timeout` passes, and
    /// takes what arrived, at most `count` messages.
    public func receive(_ count: Int, timeout: Duration = .seconds(10)) async -> [Received] {
        precondition(count >= 0, "cannot wait for \(count) messages")
        _ = await poll(timeout: timeout, interval: .milliseconds(5)) {
            state.withLock { $0.received.count - $0.taken >= count || $0.ended }
        }
        return state.withLock { state in
            let end = min(state.received.count, state.taken + count)
            defer { state.taken = end }
            return Array(state.received[state.taken..<end])
        }
    }

    /// Waits until `occurrences` messages satisfying `isLast` have arrived (or the RPC ends, or
    /// `timeout` passes) and takes every message up to and including the last of them.
    public func receive(
        until isLast: @escaping @Sendable (Etcdserverpb_WatchResponse) -> Bool,
        occurrences: Int = 1,
        timeout: Duration = .seconds(10)
    ) async -> [Received] {
        precondition(occurrences > 0, "cannot wait for \(occurrences) occurrences")
        func end(_ state: State) -> Int? {
            var seen = 0
            for index in state.taken..<state.received.count {
                guard case .response(let response) = state.received[index] else { return index + 1 }
                if isLast(response) { seen += 1 }
                if seen == occurrences { return index + 1 }
            }
            return nil
        }
        _ = await poll(timeout: timeout, interval: .milliseconds(5)) {
            state.withLock { end($0) != nil }
        }
        return state.withLock { state in
            let end = end(state) ?? state.received.count
            defer { state.taken = end }
            return Array(state.received[state.taken..<end])
        }
    }

    /// Waits for `duration` and takes whatever arrived by then; for steps that check that nothing
    /// (or nothing more) comes, which no message can signal.
    public func receive(during duration: Duration) async -> [Received] {
        try? await Task.sleep(for: duration)
        return state.withLock { state in
            defer { state.taken = state.received.count }
            return Array(state.received[state.taken...])
        }
    }

    fileprivate func deliver(_ received: Received) {
        state.withLock { state in
            guard !state.ended else { return }
            state.received.append(received)
            if case .ended = received { state.ended = true }
        }
    }

    /// Ends the request side of the RPC (an HTTP/2 half-close); the response side stays open as
    /// long as the server keeps it open.
    public func finishSending() {
        requests.finish()
    }
}

/// Opens one Watch stream on `client` (with `metadata`, e.g. clientv3's `hasleader`), runs `body`
/// with it, then cancels the RPC (etcd would keep it open otherwise) and waits for it to end.
public func withWatchStream<Result: Sendable>(
    _ client: EtcdGRPCClient,
    metadata: Metadata = [:],
    _ body: (WatchStream) async throws -> Result
) async throws -> Result {
    let (requestStream, requestContinuation) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self)
    let stream = WatchStream(requests: requestContinuation)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            do {
                try await client.watch.watch(
                    metadata: metadata,
                    requestProducer: { writer in
                        for await request in requestStream { try await writer.write(request) }
                    },
                    onResponse: { response in
                        for try await message in response.messages { stream.deliver(.response(message)) }
                    }
                )
                stream.deliver(.ended("ok"))
            } catch let error as RPCError {
                stream.deliver(.ended("\(error.code): \(error.message)"))
            } catch {
                stream.deliver(.ended(String(describing: error)))
            }
        }
        let outcome: Swift.Result<Result, any Error>
        do {
            outcome = .success(try await body(stream))
        } catch {
            outcome = .failure(error)
        }
        stream.finishSending()
        group.cancelAll()
        try await group.waitForAll()
        return try outcome.get()
    }
}

extension WatchStream.Received {
    /// The watch a response is for; the end of the RPC sorts after every watch.
    var watchID: Int64 {
        if case .response(let response) = self { return response.watchID }
        return .max
    }

    /// The message as a normalized JSON value: a response as protobuf JSON with proto field names
    /// and the server-identity header fields replaced, the end of the RPC as
    /// `{"rpc_ended": status}`.
    public var normalized: JSONValue {
        switch self {
        case .response(let response):
            if case .json(let value) = CompatibilitySession.observation(of: response) { return value }
            return .string(response.textFormatString())
        case .ended(let status):
            return .object(["rpc_ended": .string(status)])
        }
    }
}

/// Short builders for Watch requests, so that raw gRPC scenarios read like the requests they send.
extension Etcdserverpb_WatchRequest {
    /// A create request for `key` (or `[key, end)`), adjusted by `configure`.
    public static func create(
        _ key: String,
        end: String? = nil,
        _ configure: (inout Etcdserverpb_WatchCreateRequest) -> Void = { _ in }
    ) -> Etcdserverpb_WatchRequest {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(key.utf8)
        if let end { create.rangeEnd = Data(end.utf8) }
        configure(&create)
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }

    /// A cancel request for watch `id`.
    public static func cancel(_ id: Int64) -> Etcdserverpb_WatchRequest {
        var cancel = Etcdserverpb_WatchCancelRequest()
        cancel.watchID = id
        var request = Etcdserverpb_WatchRequest()
        request.cancelRequest = cancel
        return request
    }

    /// A progress request.
    public static func progress() -> Etcdserverpb_WatchRequest {
        var request = Etcdserverpb_WatchRequest()
        request.progressRequest = Etcdserverpb_WatchProgressRequest()
        return request
    }
}

extension CompatibilitySession {
    /// Sends `request` on `stream`, waits for `count` messages and records one step: the request in
    /// text format, and the messages that arrived as a normalized JSON array. Fewer than `count`
    /// messages within `timeout` are noted in the step's exit.
    @discardableResult
    public func watch(
        _ stream: WatchStream,
        _ request: Etcdserverpb_WatchRequest,
        expecting count: Int,
        timeout: Duration = .seconds(10)
    ) async -> [WatchStream.Received] {
        stream.send(request)
        let received = await stream.receive(count, timeout: timeout)
        recordWatch("Watch.send { \(Self.oneLine(request)) }", received, expected: count, timeout: timeout)
        return received
    }

    /// Waits for `count` messages on `stream` (caused by something else, e.g. a write) and records
    /// them as one step labelled `label`.
    @discardableResult
    public func watchReceive(
        _ stream: WatchStream,
        _ label: String,
        expecting count: Int,
        timeout: Duration = .seconds(10)
    ) async -> [WatchStream.Received] {
        let received = await stream.receive(count, timeout: timeout)
        recordWatch("Watch.receive \(label)", received, expected: count, timeout: timeout)
        return received
    }

    /// Waits for messages on `stream` until `occurrences` of them satisfy `isLast` and records them
    /// as one step labelled `label`; used where the number of messages is the server's choice (a
    /// catch-up from history may come in one response or several), but the last one is known.
    @discardableResult
    public func watchReceive(
        _ stream: WatchStream,
        _ label: String,
        until isLast: @escaping @Sendable (Etcdserverpb_WatchResponse) -> Bool,
        occurrences: Int = 1,
        timeout: Duration = .seconds(10)
    ) async -> [WatchStream.Received] {
        let received = await stream.receive(until: isLast, occurrences: occurrences, timeout: timeout)
        recordUntil("Watch.receive \(label)", received, isLast: isLast, occurrences: occurrences, timeout: timeout)
        return received
    }

    /// Sends `request` on `stream`, then waits and records as ``watchReceive(_:_:until:occurrences:timeout:)`` does.
    @discardableResult
    public func watch(
        _ stream: WatchStream,
        _ request: Etcdserverpb_WatchRequest,
        until isLast: @escaping @Sendable (Etcdserverpb_WatchResponse) -> Bool,
        occurrences: Int = 1,
        timeout: Duration = .seconds(10)
    ) async -> [WatchStream.Received] {
        stream.send(request)
        let received = await stream.receive(until: isLast, occurrences: occurrences, timeout: timeout)
        let label = "Watch.send { \(Self.oneLine(request)) }"
        recordUntil(label, received, isLast: isLast, occurrences: occurrences, timeout: timeout)
        return received
    }

    /// Waits for `duration` and records whatever `stream` delivered meanwhile as one step; for
    /// checking that nothing comes when nothing can say so sooner (e.g. no progress notification
    /// for a watch that did not ask for them).
    @discardableResult
    public func watchReceive(_ stream: WatchStream, _ label: String, during duration: Duration) async
        -> [WatchStream.Received]
    {
        let received = await stream.receive(during: duration)
        record(TranscriptEntry(label: "Watch.receive \(label)", output: Self.watchObservation(received)))
        return received
    }

    private func recordUntil(
        _ label: String,
        _ received: [WatchStream.Received],
        isLast: (Etcdserverpb_WatchResponse) -> Bool,
        occurrences: Int,
        timeout: Duration
    ) {
        let seen = received.filter {
            if case .response(let response) = $0 { return isLast(response) }
            return false
        }.count
        record(
            TranscriptEntry(
                label: label,
                exit: seen < occurrences
                    ? BackgroundEtcdctl.missedWaitMarker
                        + "\(seen) of \(occurrences) awaited messages within \(timeout)"
                    : nil,
                output: Self.watchObservation(received)
            )
        )
    }

    /// Makes sure nothing else is pending on `stream`: creates a watch with the client-chosen
    /// `id` on a key nobody writes, waits for its created response and records every message
    /// received up to and including it.
    ///
    /// Steps that expect no response (a cancel of an unknown watch) use it as a deadline that does
    /// not depend on time: etcd answers creates in order, so anything a step provoked and that
    /// precedes the fence's answer shows up here.
    @discardableResult
    public func watchFence(_ stream: WatchStream, id: Int64, timeout: Duration = .seconds(10)) async
        -> [WatchStream.Received]
    {
        let request = Etcdserverpb_WatchRequest.create("\u{1}fence-\(id)") { $0.watchID = id }
        stream.send(request)
        let received = await stream.receive(until: { $0.created && $0.watchID == id }, timeout: timeout)
        let answered = received.contains {
            if case .response(let response) = $0 { return response.created && response.watchID == id }
            return false
        }
        record(
            TranscriptEntry(
                label: "Watch.fence { \(Self.oneLine(request)) }",
                exit: answered
                    ? nil : BackgroundEtcdctl.missedWaitMarker + "no created response for the fence within \(timeout)",
                output: Self.watchObservation(received)
            )
        )
        return received
    }

    private func recordWatch(_ label: String, _ received: [WatchStream.Received], expected: Int, timeout: Duration) {
        record(
            TranscriptEntry(
                label: label,
                exit: received.count < expected
                    ? BackgroundEtcdctl.missedWaitMarker + "\(received.count) of \(expected) messages within \(timeout)"
                    : nil,
                output: Self.watchObservation(received)
            )
        )
    }

    /// Messages as a normalized JSON array, ordered by watch ID and, within one watch, as they
    /// arrived.
    ///
    /// etcd sends each watcher's messages in order, but when one write concerns several watchers
    /// of a stream it hands them their responses in map order, so the order across watchers
    /// varies from run to run even on real etcd; only the order within a watcher is compared.
    static func watchObservation(_ received: [WatchStream.Received]) -> Observation {
        let ordered = received.enumerated().sorted { left, right in
            let (leftID, rightID) = (left.element.watchID, right.element.watchID)
            return leftID != rightID ? leftID < rightID : left.offset < right.offset
        }
        return .json(.array(ordered.map(\.element.normalized)))
    }
}
