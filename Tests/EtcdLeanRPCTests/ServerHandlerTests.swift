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

    @Test("unknown services and methods, streaming methods, gzip and bad timeouts end trailers-only with grpc-go's status")
    func refusedAtHeaders() async throws {
        let (channel, _) = try await Self.makeChannel()
        let cases: [(path: String, extra: [String: String], code: GRPCStatusCode, message: String)] = [
            ("/nope.Service/Call", [:], .unimplemented, "unknown service nope.Service"),
            ("/test.Echo/Missing", [:], .unimplemented, "unknown method Missing for service test.Echo"),
            ("/test.Echo/Stream", [:], .unimplemented, "the lean gRPC server does not serve /test.Echo/Stream"),
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

    static func readFrames(_ channel: NIOAsyncTestingChannel, count: Int) async throws -> [HTTP2Frame] {
        var frames: [HTTP2Frame] = []
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while frames.count < count, ContinuousClock.now < deadline {
            if let frame = try await channel.readOutbound(as: HTTP2Frame.self) {
                frames.append(frame)
            } else {
                try await Task.sleep(for: .milliseconds(5))
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
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within 20 s")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Echo answers "echo: <request>"; Hang waits until cancelled; Stream is a method the lean
/// server leaves to another.
final class TestDispatcher: LeanRPCDispatcher {
    private let state = Mutex<(metadata: [String], hanging: Int, cancelled: Int)>(([], 0, 0))

    var seenMetadata: [String] { state.withLock { $0.metadata } }
    var hanging: Int { state.withLock { $0.hanging } }
    var cancelled: Int { state.withLock { $0.cancelled } }

    func route(path: String) -> LeanRPCRoute {
        switch path {
        case "/test.Echo/Echo": .unary(0)
        case "/test.Echo/Hang": .unary(1)
        case "/test.Echo/Stream": .notServed
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
        let answer = "echo: " + String(buffer: request)
        let framed = GRPCMessageWriter.frame(allocator: ByteBufferAllocator()) { buffer in buffer.writeString(answer) }
        return .response(framed)
    }
}
