import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Synchronization
import Testing

@testable import EtcdLeanRPC

/// The handler fed HTTP/2 frames directly (no NIOHTTP2Handler): what a client sends, what comes
/// back, on a testing channel whose event loop is thread-safe, so calls run as real tasks.
@Suite("Lean gRPC: the connection handler")
struct ServerHandlerTests {
    @Test("a unary call split over DATA frames gets HEADERS, DATA and OK trailers; metadata reaches the call")
    func unaryCall() async throws {
        let (channel, dispatcher) = try await Self.makeChannel()
        let request = GRPCMessageWriter.frame(Array("ping".utf8), allocator: channel.allocator)
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Echo", extra: ["hasleader": "true"]))
        // Three frames: two bytes of the prefix, the rest of it, then the message.
        for range in [0..<2, 2..<5, 5..<request.readableBytes] {
            let part = request.getSlice(at: range.lowerBound, length: range.count)!
            try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(part), endStream: range.upperBound == request.readableBytes))))
        }
        let frames = try await Self.readFrames(channel, count: 3)
        guard case .headers(let head) = frames[0].payload, case .data(let body) = frames[1].payload,
            case .headers(let trailers) = frames[2].payload
        else {
            Issue.record("expected HEADERS, DATA, HEADERS, got \(frames)")
            return
        }
        #expect(head.headers.first(name: ":status") == "200")
        #expect(head.headers.first(name: "content-type") == "application/grpc")
        #expect(!head.endStream)
        guard case .byteBuffer(var bytes) = body.data else { return }
        var reader = GRPCMessageReader(maxMessageBytes: 100)
        reader.append(bytes.readSlice(length: bytes.readableBytes)!)
        #expect(try reader.next().map { String(buffer: $0) } == "echo: ping")
        #expect(trailers.headers.first(name: "grpc-status") == "0")
        #expect(trailers.endStream)
        #expect(dispatcher.seenMetadata == ["true"])
        try await channel.close()
    }

    @Test("the CommonName of a verified client certificate, announced by the TLS layer, reaches every later call's head")
    func clientCertificateCommonName() async throws {
        let (channel, _) = try await Self.makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(LeanRPCServerHandler.ClientCertificate(commonName: "alice"))
        let request = GRPCMessageWriter.frame(Array("ping".utf8), allocator: channel.allocator)
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Echo"))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(request), endStream: true))))
        let frames = try await Self.readFrames(channel, count: 3)
        guard case .data(let body) = frames[1].payload, case .byteBuffer(var bytes) = body.data else {
            Issue.record("expected HEADERS, DATA, HEADERS, got \(frames)")
            return
        }
        var reader = GRPCMessageReader(maxMessageBytes: 100)
        reader.append(bytes.readSlice(length: bytes.readableBytes)!)
        #expect(try reader.next().map { String(buffer: $0) } == "echo: ping to alice")
        try await channel.close()
    }

    @Test("unknown services and methods, gzip and bad timeouts end trailers-only with grpc-go's status")
    func refusedAtHeaders() async throws {
        let (channel, _) = try await Self.makeChannel()
        let cases: [(path: String, extra: [String: String], code: GRPCStatusCode, message: String)] = [
            ("/nope.Service/Call", [:], .unimplemented, "unknown service nope.Service"),
            ("/test.Echo/Missing", [:], .unimplemented, "unknown method Missing for service test.Echo"),
            ("/test.Echo/Echo", ["grpc-encoding": "gzip"], .unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"gzip\""),
            ("/test.Echo/Echo", ["grpc-timeout": "10x"], .internalError,
             "transport: malformed time-out: transport: timeout unit is not recognized: \"10x\""),
        ]
        for (offset, item) in cases.enumerated() {
            let stream = HTTP2StreamID(2 * offset + 1)
            try await channel.writeInbound(Self.requestHeaders(stream: stream, path: item.path, extra: item.extra))
            let (code, message) = try await Self.readTrailersOnly(channel, stream: stream)
            #expect(code == item.code.rawValue, "\(item.path)")
            #expect(message == item.message)
        }
        try await channel.close()
    }

    @Test("a request over the limit is refused from its prefix; a compressed flag and a missing message are refused")
    func refusedMessages() async throws {
        let (channel, _) = try await Self.makeChannel(maxRequestBytes: 16)
        var oversize = channel.allocator.buffer(capacity: 5)
        oversize.writeInteger(UInt8(0))
        oversize.writeInteger(UInt32(17))
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Echo"))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(oversize)))))
        var (code, message) = try await Self.readTrailersOnly(channel, stream: 1)
        #expect(code == GRPCStatusCode.resourceExhausted.rawValue)
        #expect(message == "grpc: received message larger than max (17 vs. 16)")

        var compressed = channel.allocator.buffer(capacity: 6)
        compressed.writeInteger(UInt8(1))
        compressed.writeInteger(UInt32(1))
        compressed.writeInteger(UInt8(0))
        try await channel.writeInbound(Self.requestHeaders(stream: 3, path: "/test.Echo/Echo"))
        try await channel.writeInbound(HTTP2Frame(streamID: 3, payload: .data(.init(data: .byteBuffer(compressed), endStream: true))))
        (code, message) = try await Self.readTrailersOnly(channel, stream: 3)
        #expect(code == GRPCStatusCode.internalError.rawValue)
        #expect(message == "grpc: compressed flag set with identity or empty encoding")

        try await channel.writeInbound(Self.requestHeaders(stream: 5, path: "/test.Echo/Echo", endStream: true))
        (code, message) = try await Self.readTrailersOnly(channel, stream: 5)
        #expect(code == GRPCStatusCode.unknown.rawValue)
        #expect(message == "EOF")
        try await channel.close()
    }

    @Test("RST_STREAM cancels the call and nothing more is sent on that stream; a passed deadline ends it DEADLINE_EXCEEDED")
    func cancellation() async throws {
        let (channel, dispatcher) = try await Self.makeChannel()
        let request = GRPCMessageWriter.frame([], allocator: channel.allocator)
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Hang"))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(request), endStream: true))))
        try await Self.waitUntil { dispatcher.hanging == 1 }
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .rstStream(.cancel)))
        try await Self.waitUntil { dispatcher.cancelled == 1 }

        try await channel.writeInbound(Self.requestHeaders(stream: 3, path: "/test.Echo/Hang", extra: ["grpc-timeout": "50m"]))
        try await channel.writeInbound(HTTP2Frame(streamID: 3, payload: .data(.init(data: .byteBuffer(request), endStream: true))))
        try await Self.waitUntil { dispatcher.hanging == 2 }
        // The testing loop's clock moves only when told to.
        await channel.testingEventLoop.advanceTime(by: .milliseconds(60))
        let (code, message) = try await Self.readTrailersOnly(channel, stream: 3)
        #expect(code == GRPCStatusCode.deadlineExceeded.rawValue)
        #expect(message == "context deadline exceeded")
        try await Self.waitUntil { dispatcher.cancelled == 2 }
        // Nothing was written for the reset stream.
        #expect(try await channel.readOutbound(as: HTTP2Frame.self) == nil)
        try await channel.close()
    }

    @Test("the connection window is opened at once and both windows are given back as data arrives")
    func flowControl() async throws {
        let (channel, _) = try await Self.makeChannel(maxRequestBytes: 1 << 20, window: 100_000)
        let opened = try await Self.readFrames(channel, count: 1)
        guard case .windowUpdate(let increment) = opened[0].payload else {
            Issue.record("expected a WINDOW_UPDATE, got \(opened)")
            return
        }
        #expect(opened[0].streamID == .rootStream)
        #expect(increment == 100_000 - 65_535)
        // 60,000 bytes of one large request in three frames: past half of both windows.
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Echo"))
        var prefix = channel.allocator.buffer(capacity: 5)
        prefix.writeInteger(UInt8(0))
        prefix.writeInteger(UInt32(60_000))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(prefix)))))
        let chunk = channel.allocator.buffer(repeating: 1, count: 30_000)
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(chunk)))))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(chunk)))))
        let updates = try await Self.readFrames(channel, count: 2)
        let increments = updates.compactMap { frame -> (HTTP2StreamID, Int)? in
            guard case .windowUpdate(let increment) = frame.payload else { return nil }
            return (frame.streamID, increment)
        }
        #expect(increments.map(\.0) == [.rootStream, 1])
        #expect(increments.map(\.1) == [60_005, 60_005])
        try await channel.close()
    }

    @Test("a drain sends GOAWAY, refuses streams opened after it, lets the open call finish, then closes")
    func drain() async throws {
        let (channel, dispatcher) = try await Self.makeChannel()
        let request = GRPCMessageWriter.frame([], allocator: channel.allocator)
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Hang", extra: ["grpc-timeout": "50m"]))
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(request), endStream: true))))
        try await Self.waitUntil { dispatcher.hanging == 1 }
        channel.pipeline.fireUserInboundEventTriggered(LeanRPCServerHandler.Drain())
        let goAway = try await Self.readFrames(channel, count: 1)
        guard case .goAway(let last, let code, _) = goAway.first?.payload else {
            Issue.record("expected GOAWAY, got \(goAway)")
            return
        }
        #expect(last == 1)
        #expect(code == .noError)
        #expect(channel.isActive, "a call is still open")
        try await channel.writeInbound(Self.requestHeaders(stream: 3, path: "/test.Echo/Echo"))
        let refused = try await Self.readFrames(channel, count: 1)
        guard case .rstStream(let reason) = refused.first?.payload else {
            Issue.record("expected RST_STREAM, got \(refused)")
            return
        }
        #expect(refused.first?.streamID == 3)
        #expect(reason == .refusedStream)
        await channel.testingEventLoop.advanceTime(by: .milliseconds(60))
        let (status, _) = try await Self.readTrailersOnly(channel, stream: 1)
        #expect(status == GRPCStatusCode.deadlineExceeded.rawValue)
        try await channel.closeFuture.get()
    }

    @Test("a streaming call answers each request as it comes, with one HEADERS, DATA per answer and OK trailers after the client ends")
    func streamingCall() async throws {
        let (channel, _) = try await Self.makeChannel()
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Stream"))
        var answers: [String] = []
        for word in ["one", "two"] {
            let request = GRPCMessageWriter.frame(Array(word.utf8), allocator: channel.allocator)
            try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(request)))))
            let frames = try await Self.readFrames(channel, count: word == "one" ? 2 : 1)
            for frame in frames {
                #expect(frame.streamID == 1)
                if case .data(let body) = frame.payload, case .byteBuffer(let bytes) = body.data {
                    var reader = GRPCMessageReader(maxMessageBytes: 100)
                    reader.append(bytes)
                    if let message = try reader.next() { answers.append(String(buffer: message)) }
                    #expect(!body.endStream)
                } else if case .headers(let head) = frame.payload {
                    #expect(word == "one", "one HEADERS, before the first answer")
                    #expect(head.headers.first(name: ":status") == "200")
                    #expect(!head.endStream)
                }
            }
        }
        #expect(answers == ["echo: one", "echo: two"])
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(channel.allocator.buffer(capacity: 0)), endStream: true))))
        let trailers = try await Self.readFrames(channel, count: 1)
        guard case .headers(let end) = trailers.first?.payload else {
            Issue.record("expected trailers, got \(trailers)")
            return
        }
        #expect(end.endStream)
        #expect(end.headers.first(name: "grpc-status") == "0")
        #expect(end.headers.first(name: ":status") == nil, "trailers after HEADERS carry no :status")
        try await channel.close()
    }

    @Test("a streaming call's consumer that falls behind holds the stream's window until it catches up")
    func streamingBackPressure() async throws {
        let (channel, dispatcher) = try await Self.makeChannel(window: 1_000)
        _ = try await Self.readFrames(channel, count: 0)
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Hold"))
        let message = GRPCMessageWriter.frame([UInt8](repeating: 7, count: 95), allocator: channel.allocator)  // 100 bytes framed
        for _ in 0..<60 {
            try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(message)))))
        }
        func streamIncrements() async throws -> Int {
            var total = 0
            while let frame = try await channel.readOutbound(as: HTTP2Frame.self) {
                if frame.streamID == 1, case .windowUpdate(let increment) = frame.payload { total += increment }
            }
            return total
        }
        let beforeRelease = try await streamIncrements()
        // The first 16 messages are buffered freely (their window comes back); after that the
        // window is held: far less than the 6,000 bytes sent.
        #expect(beforeRelease > 0)
        #expect(beforeRelease <= 2_500, "window given back while the consumer read nothing: \(beforeRelease)")
        dispatcher.release()
        try await Self.waitUntil { dispatcher.held == 60 }
        var afterRelease = 0
        let deadline = ContinuousClock.now.advanced(by: Self.patience)
        while beforeRelease + afterRelease < 5_500, ContinuousClock.now < deadline {
            afterRelease += try await streamIncrements()
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(beforeRelease + afterRelease >= 5_500, "window held back is given back once the consumer catches up")
        try await channel.close()
    }

    @Test("RST_STREAM on a streaming call cancels it; its later writes fail and nothing more is sent")
    func streamingReset() async throws {
        let (channel, dispatcher) = try await Self.makeChannel()
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Linger"))
        let first = try await Self.readFrames(channel, count: 2)
        #expect(first.count == 2)
        try await Self.waitUntil { dispatcher.hanging == 1 }
        try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .rstStream(.cancel)))
        try await Self.waitUntil { dispatcher.lateWriteError != nil }
        #expect(dispatcher.lateWriteError is LeanRPCStreamClosed)
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await channel.readOutbound(as: HTTP2Frame.self) == nil)
        try await channel.close()
    }

    @Test("a streaming call whose deadline passes after its headers went out ends with DEADLINE_EXCEEDED trailers")
    func streamingDeadline() async throws {
        let (channel, dispatcher) = try await Self.makeChannel()
        try await channel.writeInbound(Self.requestHeaders(stream: 1, path: "/test.Echo/Linger", extra: ["grpc-timeout": "50m"]))
        _ = try await Self.readFrames(channel, count: 2)
        try await Self.waitUntil { dispatcher.hanging == 1 }
        await channel.testingEventLoop.advanceTime(by: .milliseconds(60))
        let frames = try await Self.readFrames(channel, count: 1)
        guard case .headers(let trailers) = frames.first?.payload else {
            Issue.record("expected trailers, got \(frames)")
            return
        }
        #expect(trailers.endStream)
        #expect(trailers.headers.first(name: ":status") == nil)
        #expect(trailers.headers.first(name: "grpc-status") == String(GRPCStatusCode.deadlineExceeded.rawValue))
        try await Self.waitUntil { dispatcher.lateWriteError != nil }
        try await channel.close()
    }

    // MARK: Harness

    static func makeChannel(maxRequestBytes: Int = 1 << 16, window: Int = 65_535) async throws
        -> (NIOAsyncTestingChannel, TestDispatcher)
    {
        let dispatcher = TestDispatcher()
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            let handler = LeanRPCServerHandler(
                dispatcher: dispatcher, executor: nil,
                configuration: .init(maxRequestBytes: maxRequestBytes, connectionWindow: window, streamWindow: window))
            try channel.pipeline.syncOperations.addHandler(handler)
        }
        try await channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        return (channel, dispatcher)
    }

    static func requestHeaders(stream: HTTP2StreamID, path: String, extra: [String: String] = [:], endStream: Bool = false) -> HTTP2Frame {
        var headers: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":path": path, ":authority": "localhost",
            "content-type": "application/grpc", "te": "trailers",
        ]
        for (name, value) in extra { headers.add(name: name, value: value) }
        return HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers, endStream: endStream)))
    }

    /// How long a wait for the handler or a call's task may take before the test fails. Only a
    /// hang should reach it: the whole suite starts at once on two cores, and CPU-bound tests
    /// have kept the cooperative pool busy for over 90 s before a call's task got its turn.
    static let patience = Duration.seconds(240)

    static func readFrames(_ channel: NIOAsyncTestingChannel, count: Int) async throws -> [HTTP2Frame] {
        var frames: [HTTP2Frame] = []
        let deadline = ContinuousClock.now.advanced(by: patience)
        while frames.count < count {
            if let frame = try await channel.readOutbound(as: HTTP2Frame.self) {
                frames.append(frame)
            } else if ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            } else {
                break
            }
        }
        return frames
    }

    /// The grpc-status and grpc-message of a trailers-only response on `stream`.
    static func readTrailersOnly(_ channel: NIOAsyncTestingChannel, stream: HTTP2StreamID) async throws -> (Int?, String?) {
        let frames = try await readFrames(channel, count: 1)
        guard let frame = frames.first, frame.streamID == stream, case .headers(let headers) = frame.payload, headers.endStream else {
            Issue.record("expected trailers-only on stream \(stream), got \(frames)")
            return (nil, nil)
        }
        #expect(headers.headers.first(name: ":status") == "200")
        return (headers.headers.first(name: "grpc-status").flatMap { Int($0) },
                headers.headers.first(name: "grpc-message").map(GRPCStatusMessage.percentDecoded))
    }

    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: patience)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within \(patience)")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Echo answers "echo: <request>"; Hang waits until cancelled. Streaming: Stream answers each
/// request "echo: <request>" and ends OK when the client does; Hold reads nothing until
/// `release()`, then counts what it reads; Linger answers once, then waits until cancelled and
/// tries to write again.
final class TestDispatcher: LeanRPCDispatcher {
    private let state = Mutex<(metadata: [String], hanging: Int, cancelled: Int, released: Bool, held: Int, lateWrite: (any Error)?)>(
        ([], 0, 0, false, 0, nil))

    var seenMetadata: [String] { state.withLock { $0.metadata } }
    var hanging: Int { state.withLock { $0.hanging } }
    var cancelled: Int { state.withLock { $0.cancelled } }
    var held: Int { state.withLock { $0.held } }
    var lateWriteError: (any Error)? { state.withLock { $0.lateWrite } }
    func release() { state.withLock { $0.released = true } }

    func callStreaming(
        _ method: Int, requests: LeanRPCRequestStream, responses: LeanRPCResponseStream, head: LeanRPCRequestHead
    ) async -> LeanRPCStatus {
        let allocator = ByteBufferAllocator()
        do {
            switch method {
            case 0:
                for try await request in requests {
                    let answer = "echo: " + String(buffer: request) + (head.clientCertificateCommonName.map { " to \($0)" } ?? "")
                    try await responses.write([GRPCMessageWriter.frame(Array(answer.utf8), allocator: allocator)])
                }
                return .ok
            case 1:
                while !state.withLock({ $0.released }) { try await Task.sleep(for: .milliseconds(5)) }
                for try await _ in requests { state.withLock { $0.held += 1 } }
                return .ok
            default:
                try await responses.write([GRPCMessageWriter.frame(Array("first".utf8), allocator: allocator)])
                state.withLock { $0.hanging += 1 }
                try? await Task.sleep(for: .seconds(3_600))
                state.withLock { $0.cancelled += 1 }
                do {
                    try await responses.write([GRPCMessageWriter.frame(Array("late".utf8), allocator: allocator)])
                } catch {
                    state.withLock { $0.lateWrite = error }
                }
                return LeanRPCStatus(.cancelled, "cancelled")
            }
        } catch {
            return LeanRPCStatus(.unknown, "\(error)")
        }
    }

    func route(path: String) -> LeanRPCRoute {
        switch path {
        case "/test.Echo/Echo": .unary(0)
        case "/test.Echo/Hang": .unary(1)
        case "/test.Echo/Stream": .streaming(0)
        case "/test.Echo/Hold": .streaming(1)
        case "/test.Echo/Linger": .streaming(2)
        case _ where path.hasPrefix("/test.Echo/"): .unknownMethod(service: "test.Echo", method: String(path.dropFirst("/test.Echo/".count)))
        default: .unknownService(String(path.dropFirst().prefix(while: { $0 != "/" })))
        }
    }

    func callUnary(_ method: Int, request: ByteBuffer, head: LeanRPCRequestHead) async -> LeanRPCOutcome {
        if method == 1 {
            state.withLock { $0.hanging += 1 }
            // Ends only when the call is cancelled (the sleep throws then).
            try? await Task.sleep(for: .seconds(3_600))
            state.withLock { $0.cancelled += 1 }
            return .failure(.cancelled, "cancelled")
        }
        let hasLeader = head.metadata[canonicalForm: "hasleader"].map { String($0) }
        state.withLock { $0.metadata.append(contentsOf: hasLeader) }
        let answer = "echo: " + String(buffer: request) + (head.clientCertificateCommonName.map { " to \($0)" } ?? "")
        let framed = GRPCMessageWriter.frame(allocator: ByteBufferAllocator()) { buffer in buffer.writeString(answer) }
        return .response(framed)
    }
}
