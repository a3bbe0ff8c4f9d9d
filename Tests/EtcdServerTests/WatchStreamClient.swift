import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

/// One Watch stream driven by a test: requests are sent when the test says so, responses are
/// collected as they arrive and can be waited for with a deadline.
final class WatchStreamClient: Sendable {
    /// What arrived, shared with the task that reads the stream.
    private final class Inbox: Sendable {
        let received = Mutex<[Etcdserverpb_WatchResponse]>([])
        let ended = Mutex<(any Error)?>(nil)
        /// While set, the reader stops taking responses off the connection (a slow client).
        let paused = Atomic<Bool>(false)
    }

    private let outgoing = AsyncStream<Etcdserverpb_WatchRequest>.makeStream()
    private let inbox = Inbox()
    private let task: Task<Void, Never>

    /// Opens the stream on `client`; it lives until ``close()``.
    init(_ client: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix>) {
        let outgoing = self.outgoing
        let inbox = self.inbox
        task = Task {
            do {
                try await client.watch(
                    requestProducer: { writer in
                        for await request in outgoing.stream { try await writer.write(request) }
                    },
                    onResponse: { response in
                        for try await message in response.messages {
                            inbox.received.withLock { $0.append(message) }
                            while inbox.paused.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(5)) }
                        }
                    }
                )
            } catch {
                inbox.ended.withLock { $0 = error }
            }
        }
    }

    func send(_ request: Etcdserverpb_WatchRequest) {
        outgoing.continuation.yield(request)
    }

    func create(
        key: String, rangeEnd: String = "", start: Int64 = 0, id: Int64 = 0, prevKV: Bool = false,
        filters: [Etcdserverpb_WatchCreateRequest.FilterType] = []
    ) {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(key.utf8)
        create.rangeEnd = Data(rangeEnd.utf8)
        create.startRevision = start
        create.watchID = id
        create.prevKv = prevKV
        create.filters = filters
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        send(request)
    }

    func cancel(_ id: Int64) {
        var request = Etcdserverpb_WatchRequest()
        request.cancelRequest.watchID = id
        send(request)
    }

    func requestProgress() {
        var request = Etcdserverpb_WatchRequest()
        request.progressRequest = Etcdserverpb_WatchProgressRequest()
        send(request)
    }

    /// Stops (or resumes) reading responses: the server then sees a client that does not read.
    func setPaused(_ paused: Bool) {
        inbox.paused.store(paused, ordering: .relaxed)
    }

    var responses: [Etcdserverpb_WatchResponse] { inbox.received.withLock { $0 } }

    /// Waits until `condition` holds for the responses so far; fails after `timeout`.
    @discardableResult
    func waitFor(
        timeout: Duration = .seconds(20), _ what: String,
        _ condition: ([Etcdserverpb_WatchResponse]) -> Bool
    ) async throws -> [Etcdserverpb_WatchResponse] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let responses = self.responses
            if condition(responses) { return responses }
            if let error = inbox.ended.withLock({ $0 }) {
                throw TestFailure("the watch stream ended (\(error)) while waiting for \(what)")
            }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("timed out waiting for \(what); got \(responses.count) responses")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits until the server ends the stream and says how (`"timed out"` if it does not).
    func ended(timeout: Duration) async -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let error = inbox.ended.withLock({ $0 }) { return "\(error)" }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return "timed out"
    }

    /// Ends the stream from the client side (as a client that goes away does).
    func close() async {
        outgoing.continuation.finish()
        task.cancel()
        await task.value
    }
}
