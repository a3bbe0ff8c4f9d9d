public import NIOCore
import NIOHPACK
public import NIOHTTP2

/// A gRPC server on one HTTP/2 connection, without a channel, pipeline or task bridge per call:
/// it sits after `NIOHTTP2Handler` (no stream multiplexer) and handles every stream's frames
/// inline on the connection's event loop. A unary call's request is reassembled from its DATA
/// frames, handed to the dispatcher as a task of its own (preferring `executor`, so it runs on
/// this loop), and its response goes out as HEADERS, DATA and trailers written together and
/// flushed once per event-loop turn for all the calls that finished in it. A streaming call
/// starts at its HEADERS; its request messages reach the task through a back-pressured sequence
/// and its responses go out as the task writes them.
///
/// What clients rely on, as grpc-go's server (etcd's) answers it: `grpc-timeout` (malformed:
/// INTERNAL; passed: the call is cancelled and ends DEADLINE_EXCEEDED), errors as trailers-only
/// responses with a percent-encoded `grpc-message`, a request over the message limit
/// (RESOURCE_EXHAUSTED, refused from its length prefix), a `grpc-encoding` other than identity
/// (UNIMPLEMENTED) and compressed flags (INTERNAL), messages split over DATA frames, RST_STREAM
/// as cancellation, flow-control windows given back as data arrives, unknown services and
/// methods (UNIMPLEMENTED with grpc-go's text).
public final class LeanRPCServerHandler: ChannelInboundHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias OutboundOut = HTTP2Frame

    public struct Configuration: Sendable {
        /// The largest request message accepted (etcd: --max-request-bytes plus gRPC's margin).
        public var maxRequestBytes: Int
        /// The connection's inbound flow-control window; streams get theirs from SETTINGS.
        public var connectionWindow: Int
        /// The stream window announced in SETTINGS_INITIAL_WINDOW_SIZE.
        public var streamWindow: Int

        public init(maxRequestBytes: Int, connectionWindow: Int = 1 << 20, streamWindow: Int = 1 << 20) {
            self.maxRequestBytes = maxRequestBytes
            self.connectionWindow = connectionWindow
            self.streamWindow = streamWindow
        }
    }

    private struct Call {
        var method: Int
        var head: LeanRPCRequestHead
        var reader: GRPCMessageReader
        var window: InboundWindow
        /// A unary call's request message, once it is complete.
        var request: ByteBuffer?
        /// Where a streaming call's request messages go; nil for a unary call.
        var requests: LeanRPCRequestStream.Producer.Source?
        var task: Task<Void, Never>?
        var deadlineTimer: Scheduled<Void>?
        /// The request has ended (END_STREAM): only the response remains.
        var halfClosed = false
        /// The response headers have gone out: the call ends with trailers, not trailers-only.
        var headersSent = false
        /// The consumer of a streaming call's requests is behind: window increments are held in
        /// `withheldWindow` until it catches up.
        var readingPaused = false
        var withheldWindow = 0

        var isStreaming: Bool { requests != nil }

        /// Stops whatever runs for the call.
        func stop() {
            task?.cancel()
            deadlineTimer?.cancel()
            requests?.finish(LeanRPCStreamClosed())
        }
    }

    private let dispatcher: any LeanRPCDispatcher
    private let executor: (any TaskExecutor)?
    private let tracker: LeanRPCCallTracker?
    private let configuration: Configuration
    private var calls: [HTTP2StreamID: Call] = [:]
    private var connectionWindow: InboundWindow
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var unflushed = false
    /// Draining (see ``Drain``): the newest stream the connection accepted; later ones are refused.
    private var drainingAfter: HTTP2StreamID?
    private var lastStream: HTTP2StreamID = .rootStream

    /// Sent down the pipeline (`fireUserInboundEventTriggered`) to stop the connection gracefully:
    /// the client gets a GOAWAY naming the last stream that will be answered, calls already
    /// started finish, streams opened after are refused, and once none is left the connection
    /// closes.
    public struct Drain: Sendable {
        public init() {}
    }

    /// Sent down the pipeline by the TLS layer once the client's certificate is verified and
    /// admitted (with `--client-cert-auth`): every later call's head carries its CommonName.
    public struct ClientCertificate: Sendable {
        public var commonName: String?

        public init(commonName: String?) {
            self.commonName = commonName
        }
    }

    /// The connection's verified client certificate CommonName (see ``ClientCertificate``).
    private var clientCommonName: String?

    /// `tracker`, if given, counts the calls' tasks until each has ended.
    public init(
        dispatcher: any LeanRPCDispatcher, executor: (any TaskExecutor)?, configuration: Configuration,
        tracker: LeanRPCCallTracker? = nil
    ) {
        self.dispatcher = dispatcher
        self.executor = executor
        self.tracker = tracker
        self.configuration = configuration
        self.connectionWindow = InboundWindow(target: configuration.connectionWindow)
    }

    /// Calls whose responses have not been written yet.
    public var openCalls: Int { calls.count }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { openConnectionWindow(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        openConnectionWindow(context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        for (_, call) in calls { call.stop() }
        calls.removeAll()
        self.context = nil
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            receiveHeaders(headers, on: frame.streamID, context: context)
        case .data(let payload):
            receiveData(payload, on: frame.streamID, context: context)
        case .rstStream:
            // The client gave up on the call: stop it, send nothing more on the stream.
            calls.removeValue(forKey: frame.streamID)?.stop()
        default:
            // Connection-level frames are NIOHTTP2Handler's (and the PING responder's).
            break
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let certificate = event as? ClientCertificate {
            clientCommonName = certificate.commonName
            return
        }
        guard event is Drain else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard drainingAfter == nil else { return }
        drainingAfter = lastStream
        context.write(
            wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStream, errorCode: .noError, opaqueData: nil))),
            promise: nil)
        unflushed = true
        flushIfNeeded(context)
        closeIfDrained(context)
    }

    private func closeIfDrained(_ context: ChannelHandlerContext) {
        guard drainingAfter != nil, calls.isEmpty else { return }
        flushIfNeeded(context)
        context.close(promise: nil)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context)
        closeIfDrained(context)
        context.fireChannelReadComplete()
    }

    // MARK: Requests

    private func receiveHeaders(_ headers: HTTP2Frame.FramePayload.Headers, on stream: HTTP2StreamID, context: ChannelHandlerContext) {
        guard calls[stream] == nil else {
            // Trailers from a client: unary requests have none; the request ends here.
            if headers.endStream { endRequest(on: stream, context: context) }
            return
        }
        if let last = drainingAfter, stream > last {
            // Opened after the GOAWAY: the client retries it on another connection.
            reset(stream, .refusedStream, context: context)
            return
        }
        lastStream = max(lastStream, stream)
        let fields = headers.headers
        guard let path = fields.first(name: ":path"), fields.first(name: ":method") == "POST" else {
            reset(stream, .protocolError, context: context)
            return
        }
        if let type = fields.first(name: "content-type"), !type.hasPrefix("application/grpc") {
            // grpc-go answers a non-gRPC content type with HTTP 415.
            writeHTTPError(stream, status: "415", message: "invalid gRPC request content-type \"\(type)\"", context: context)
            return
        }
        if let encoding = fields.first(name: "grpc-encoding"), encoding != "identity" {
            fail(stream, .unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\"", context: context)
            return
        }
        var timeout: TimeAmount?
        if let value = fields.first(name: "grpc-timeout") {
            do {
                timeout = TimeAmount(try GRPCTimeout.parse(value))
            } catch {
                fail(stream, .internalError, error.message, context: context)
                return
            }
        }
        let method: Int
        let streaming: Bool
        switch dispatcher.route(path: path) {
        case .unary(let index):
            (method, streaming) = (index, false)
        case .streaming(let index):
            (method, streaming) = (index, true)
        case .unknownService(let service):
            fail(stream, .unimplemented, "unknown service \(service)", context: context)
            return
        case .unknownMethod(let service, let name):
            fail(stream, .unimplemented, "unknown method \(name) for service \(service)", context: context)
            return
        }
        var metadata = HPACKHeaders()
        for (name, value, indexing) in fields where !Self.isProtocolHeader(name) {
            metadata.add(name: name, value: value, indexing: indexing)
        }
        var call = Call(
            method: method,
            head: LeanRPCRequestHead(
                path: path, metadata: metadata, deadline: timeout.map { context.eventLoop.now + $0 },
                clientCertificateCommonName: clientCommonName),
            reader: GRPCMessageReader(maxMessageBytes: configuration.maxRequestBytes),
            window: InboundWindow(target: configuration.streamWindow))
        if let timeout {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            call.deadlineTimer = context.eventLoop.scheduleTask(in: timeout) {
                bound.value.deadlinePassed(on: stream)
            }
        }
        if streaming {
            let (source, requests) = LeanRPCRequestStream.make(loop: context.eventLoop, handler: self, stream: stream)
            call.requests = source
            let responses = LeanRPCResponseStream(
                loop: context.eventLoop, handler: NIOLoopBound(self, eventLoop: context.eventLoop), stream: stream)
            let dispatcher = self.dispatcher
            let head = call.head
            call.task = start(on: stream, context: context) {
                let status = await dispatcher.callStreaming(method, requests: requests, responses: responses, head: head)
                return { handler in handler.end(stream, status) }
            }
        }
        calls[stream] = call
        if headers.endStream { endRequest(on: stream, context: context) }
    }

    private func receiveData(_ payload: HTTP2Frame.FramePayload.Data, on stream: HTTP2StreamID, context: ChannelHandlerContext) {
        let length = payload.data.readableBytes + (payload.paddingBytes.map { $0 + 1 } ?? 0)
        // The connection's window is given back whatever becomes of the stream.
        if let increment = connectionWindow.received(length) {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
            unflushed = true
        }
        guard var call = calls[stream], !call.halfClosed else { return }
        if case .byteBuffer(let bytes) = payload.data {
            call.reader.append(bytes)
        }
        do {
            while let message = try call.reader.next() {
                if let requests = call.requests {
                    if requests.yield(message) == .stopProducing { call.readingPaused = true }
                    continue
                }
                guard call.request == nil else {
                    calls[stream] = call
                    fail(stream, .unimplemented, "grpc: server received more than one request message for a unary call", context: context)
                    return
                }
                call.request = message
            }
        } catch {
            calls[stream] = call
            fail(stream, error.status, error.message, context: context)
            return
        }
        if !payload.endStream, let increment = call.window.received(length) {
            if call.readingPaused {
                call.withheldWindow += increment
            } else {
                context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
                unflushed = true
            }
        }
        calls[stream] = call
        if payload.endStream { endRequest(on: stream, context: context) }
    }

    /// The request is complete. A unary call starts now, if it got exactly one message; a
    /// streaming call's request messages end.
    private func endRequest(on stream: HTTP2StreamID, context: ChannelHandlerContext) {
        guard var call = calls[stream], !call.halfClosed else { return }
        call.halfClosed = true
        if let requests = call.requests {
            calls[stream] = call
            if call.reader.bufferedBytes > 0 {
                fail(stream, .internalError, "grpc: failed to receive the whole message: unexpected EOF", context: context)
            } else {
                requests.finish()
            }
            return
        }
        guard let request = call.request else {
            calls[stream] = call
            // grpc-go reports a request that ended early as its reader's EOF.
            fail(stream, .unknown, call.reader.bufferedBytes > 0 ? "unexpected EOF" : "EOF", context: context)
            return
        }
        call.request = nil
        let dispatcher = self.dispatcher
        let method = call.method
        let head = call.head
        call.task = start(on: stream, context: context) {
            let outcome = await dispatcher.callUnary(method, request: request, head: head)
            return { handler in handler.finish(stream, outcome) }
        }
        calls[stream] = call
    }

    /// Runs a call's work as a task (on `executor` if there is one); what the work returns is
    /// done on this handler's loop afterwards.
    private func start(
        on stream: HTTP2StreamID, context: ChannelHandlerContext,
        _ work: @escaping @Sendable () async -> @Sendable (LeanRPCServerHandler) -> Void
    ) -> Task<Void, Never> {
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let tracker = self.tracker
        tracker?.begin()
        let operation: @Sendable () async -> Void = {
            defer { tracker?.end() }
            let then = await work()
            if loop.inEventLoop {
                then(bound.value)
            } else {
                loop.execute { then(bound.value) }
            }
        }
        return executor.map { Task(executorPreference: $0, operation: operation) } ?? Task(operation: operation)
    }

    /// The consumer of a streaming call's requests caught up: the window held back goes out.
    func resumeReading(_ stream: HTTP2StreamID) {
        guard let context, var call = calls[stream] else { return }
        call.readingPaused = false
        if call.withheldWindow > 0, !call.halfClosed {
            context.write(
                wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: call.withheldWindow))),
                promise: nil)
            unflushed = true
            scheduleFlush(context)
        }
        call.withheldWindow = 0
        calls[stream] = call
    }

    // MARK: Responses

    /// Writes response messages of a streaming call, after its headers if they have not gone.
    func send(_ messages: [ByteBuffer], on stream: HTTP2StreamID, promise: EventLoopPromise<Void>) {
        guard let context, var call = calls[stream], call.isStreaming else {
            promise.fail(LeanRPCStreamClosed())
            return
        }
        if !call.headersSent {
            call.headersSent = true
            calls[stream] = call
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.responseHeaders)))), promise: nil)
        }
        guard let last = messages.indices.last else {
            promise.succeed()
            return
        }
        for index in messages.indices {
            context.write(
                wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(messages[index]))))),
                promise: index == last ? promise : nil)
        }
        unflushed = true
        scheduleFlush(context)
    }

    /// Ends a call that is still open with `status` (a streaming call's task ended, a deadline
    /// passed), flushed with whatever else this loop turn writes.
    private func end(_ stream: HTTP2StreamID, _ status: LeanRPCStatus) {
        guard let context, calls[stream] != nil else { return }
        fail(stream, status.code, status.message, context: context)
        scheduleFlush(context)
    }

    private func finish(_ stream: HTTP2StreamID, _ outcome: LeanRPCOutcome) {
        guard let context, calls[stream] != nil else { return }
        switch outcome {
        case .response(let message):
            guard let call = calls.removeValue(forKey: stream) else { return }
            call.deadlineTimer?.cancel()
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.responseHeaders)))), promise: nil)
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(message))))), promise: nil)
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.okTrailers, endStream: true)))), promise: nil)
            unflushed = true
        case .failure(let code, let message):
            fail(stream, code, message, context: context)
        }
        scheduleFlush(context)
    }

    /// Ends a call with `code`: trailers after the response headers if they went out, a
    /// trailers-only response if not.
    private func fail(_ stream: HTTP2StreamID, _ code: GRPCStatusCode, _ message: String, context: ChannelHandlerContext) {
        let call = calls.removeValue(forKey: stream)
        call?.stop()
        var headers: HPACKHeaders = call?.headersSent == true ? [:] : Self.responseHeaders
        headers.add(name: "grpc-status", value: String(code.rawValue))
        if !message.isEmpty { headers.add(name: "grpc-message", value: GRPCStatusMessage.percentEncoded(message)) }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers, endStream: true)))), promise: nil)
        unflushed = true
    }

    private func writeHTTPError(_ stream: HTTP2StreamID, status: String, message: String, context: ChannelHandlerContext) {
        let headers: HPACKHeaders = [":status": status, "content-type": "text/plain"]
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers)))), promise: nil)
        var body = context.channel.allocator.buffer(capacity: message.utf8.count)
        body.writeString(message)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(body), endStream: true)))), promise: nil)
        unflushed = true
    }

    private func reset(_ stream: HTTP2StreamID, _ code: HTTP2ErrorCode, context: ChannelHandlerContext) {
        calls.removeValue(forKey: stream)?.stop()
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .rstStream(code))), promise: nil)
        unflushed = true
    }

    private func deadlinePassed(on stream: HTTP2StreamID) {
        end(stream, LeanRPCStatus(.deadlineExceeded, "context deadline exceeded"))
    }

    // MARK: Flushing

    /// One flush for everything written in this event-loop turn: the responses of calls that
    /// finish together leave in as few syscalls as the socket allows.
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = bound.value
            handler.flushScheduled = false
            if let context = handler.context {
                handler.flushIfNeeded(context)
                handler.closeIfDrained(context)
            }
        }
    }

    private func flushIfNeeded(_ context: ChannelHandlerContext) {
        guard unflushed else { return }
        unflushed = false
        context.flush()
    }

    private func openConnectionWindow(_ context: ChannelHandlerContext) {
        // HTTP/2 starts every connection at 65,535 bytes; SETTINGS cannot raise it, a
        // WINDOW_UPDATE on stream 0 can.
        let increment = configuration.connectionWindow - 65_535
        guard increment > 0, !openedConnectionWindow else { return }
        openedConnectionWindow = true
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
    }

    private var openedConnectionWindow = false

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    private static func isProtocolHeader(_ name: String) -> Bool {
        name.hasPrefix(":") || name == "content-type" || name == "te" || name == "grpc-timeout"
            || name == "grpc-encoding" || name == "grpc-accept-encoding" || name == "user-agent"
    }
}
