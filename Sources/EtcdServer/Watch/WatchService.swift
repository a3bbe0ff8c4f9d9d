import DequeModule
import EtcdAPI
import EtcdCommon
import EtcdLeanRPC
import EtcdMVCC
import EtcdReplica
import Foundation
import GRPCCore
import GRPCProtobuf
import SwiftProtobuf

/// etcd's Watch service: one bidirectional stream carries any number of watchers. Requests
/// (create, cancel, progress) are read in order; responses leave through the stream's outbox in
/// the hub, in the order the hub queued them.
///
/// As in etcd, the stream stays open after the client stops sending (it may still be waiting for
/// events), and ends when the client goes away or the server stops.
struct WatchService: RegistrableRPCService {
    let hub: WatchHub
    let header: ResponseHeaderSource
    /// A response larger than this is split for watchers that asked for fragments (etcd: the
    /// request size limit plus gRPC's overhead).
    let fragmentLimit: Int
    /// etcd's `--experimental-watch-progress-notify-interval`.
    let progressNotifyInterval: Duration
    /// Who may watch what: a watcher needs read permission on its range when it is created.
    let authenticator: Authenticator
    let replica: ReplicaHandle

    /// Registered by hand rather than through the generated protocol, so that responses can reach
    /// the transport already encoded (``WatchWire``).
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Etcdserverpb_Watch.Method.Watch.descriptor,
            deserializer: ProtobufDeserializer<Etcdserverpb_WatchRequest>(),
            serializer: WatchWireSerializer()
        ) { request, context in
            StreamingServerResponse { writer in
                try await watch(request: request.messages, response: writer, context: context)
                return [:]
            }
        }
    }

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<WatchWire>,
        context: ServerContext
    ) async throws {
        let stream = hub.openStream()
        defer { hub.closeStream(stream) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while let messages = await hub.nextMessages(on: stream) {
                    try await send(messages, to: response)
                }
                // The hub closed the stream: the server is stopping.
                if !Task.isCancelled { throw RPCError(code: .unavailable, message: EtcdError.stopped.message) }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: Self.jittered(progressNotifyInterval))
                    hub.progressTick(on: stream)
                }
            }
            group.addTask {
                for try await message in request {
                    await hub.waitForRoom(on: stream)
                    await handle(message, on: stream)
                }
                // The client stopped sending; its watchers stay until it closes the stream.
                while true { try await Task.sleep(for: .seconds(3_600)) }
            }
            group.addTask {
                // gRPC reports a client that reset the stream or disconnected here, not by
                // cancelling this task.
                try await context.cancellation.cancelled
            }
            // Whichever child ends first (the client went away, a write failed, the server is
            // stopping) ends the stream.
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func handle(_ message: Etcdserverpb_WatchRequest, on stream: UInt64) async {
        switch message.requestUnion {
        case .createRequest(let create):
            if let refusal = await authorizationRefusal(of: create) {
                hub.refuseCreate(on: stream, reason: refusal)
            } else {
                hub.create(on: stream, create)
            }
        case .cancelRequest(let cancel): hub.cancel(on: stream, watchID: cancel.watchID)
        case .progressRequest: hub.requestProgress(on: stream)
        case nil: break  // etcd ignores requests it does not know
        }
    }

    /// Why the caller may not watch the range (in etcd's words: the whole gRPC error as its
    /// text), or nil if it may. Checked once, at creation, as etcd does; a range ending in one
    /// zero byte is checked as every key from its start.
    private func authorizationRefusal(of create: Etcdserverpb_WatchCreateRequest) async -> String? {
        guard authenticator.isEnabled else { return nil }
        do {
            let identity = try await authenticator.identity()
            let key = create.key.isEmpty ? Data([0]) : create.key
            try replica.read { (replica) throws(ReplicaError) in
                try replica.checkRead(identity, key: key, rangeEnd: create.rangeEnd)
            }
            return nil
        } catch {
            let status = LeanServiceTable.status(of: error)
            return "rpc error: code = \(Self.goCodeName(status.code.rawValue)) desc = \(status.message)"
        }
    }

    /// grpc-go's names of status codes, as its errors print them.
    static func goCodeName(_ code: Int) -> String {
        let names = [
            "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
            "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
            "Internal", "Unavailable", "DataLoss", "Unauthenticated",
        ]
        return names.indices.contains(code) ? names[code] : "Code(\(code))"
    }

    /// Writes one batch taken from the outbox as one write to the transport (one flush for all).
    private func send(_ messages: Deque<OutgoingWatchMessage>, to writer: RPCWriter<WatchWire>) async throws {
        var responses: [WatchWire] = []
        responses.reserveCapacity(messages.count)
        for message in messages {
            switch message {
            case .control(var response):
                header.fill(&response.header)
                responses.append(.message(response))
            case .events(let watchID, let headerRevision, let events, let encoded, let prevKV, let fragment):
                var responseHeader = Etcdserverpb_ResponseHeader()
                responseHeader.revision = headerRevision
                header.fill(&responseHeader)
                if let encoded, !prevKV, !fragment {
                    responses.append(.events(header: responseHeader, watchID: watchID, encodedEvents: encoded))
                    continue
                }
                var response = Etcdserverpb_WatchResponse()
                response.header = responseHeader
                response.watchID = watchID
                response.events = wireEvents(events, withPreviousValues: prevKV)
                if fragment {
                    responses += Self.fragments(of: response, limit: fragmentLimit).map { .message($0) }
                } else {
                    responses.append(.message(response))
                }
            }
        }
        try await writer.write(contentsOf: responses)
    }

    /// The events as sent, with the previous value of each key added for watchers that asked.
    private func wireEvents(_ events: [Mvccpb_Event], withPreviousValues: Bool) -> [Mvccpb_Event] {
        guard withPreviousValues else { return events }
        let previous = hub.previousValues(for: events)
        return zip(events, previous).map { event, previous in
            var event = event
            if let previous { event.prevKv = Mvccpb_KeyValue(previous) }
            return event
        }
    }

    /// etcd's fragmenting: a response of at least `limit` bytes with two or more events is sent as
    /// consecutive responses, each under `limit` where possible (at least one event each), all but
    /// the last marked `fragment`.
    static func fragments(of response: Etcdserverpb_WatchResponse, limit: Int) -> [Etcdserverpb_WatchResponse] {
        var empty = response
        empty.events = []
        let baseSize = (try? empty.serializedBytes() as [UInt8])?.count ?? 0
        let eventSizes = response.events.map { event -> Int in
            let size = (try? event.serializedBytes() as [UInt8])?.count ?? 0
            // Field 11, length-delimited: one tag byte, the length as a varint, the event.
            return 1 + varintLength(size) + size
        }
        guard baseSize + eventSizes.reduce(0, +) >= limit, response.events.count >= 2 else { return [response] }
        var parts: [Etcdserverpb_WatchResponse] = []
        var current = empty
        current.fragment = true
        var currentSize = baseSize + 2  // the fragment flag
        for (event, size) in zip(response.events, eventSizes) {
            if !current.events.isEmpty, currentSize + size >= limit {
                parts.append(current)
                current.events = []
                currentSize = baseSize + 2
            }
            current.events.append(event)
            currentSize += size
        }
        current.fragment = false
        parts.append(current)
        return parts
    }

    private static func varintLength(_ value: Int) -> Int {
        var length = 1
        var rest = value >> 7
        while rest > 0 {
            length += 1
            rest >>= 7
        }
        return length
    }

    /// etcd adds up to a tenth of the interval at random, so that streams do not tick together.
    static func jittered(_ interval: Duration) -> Duration {
        let nanoseconds = interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000
        let jitter = nanoseconds >= 10 ? Int64.random(in: 0..<(nanoseconds / 10)) : 0
        return .nanoseconds(nanoseconds + jitter)
    }
}
