import NIOCore
import NIOEmbedded
import Synchronization
import Testing

import EtcdTransport

/// The PING policy of `HTTP2PingResponder` on an `EmbeddedChannel`, whose clock only moves when
/// told to.
@Suite("PING policy")
struct PingPolicyTests {
    typealias Frames = ClientPingResponderTests

    static func policy(maxStrikes: Int = 10_000, maxUnsentAckBytes: Int = 64 * 1024) -> HTTP2PingPolicy {
        var policy = HTTP2PingPolicy()
        policy.maxStrikes = maxStrikes
        policy.maxUnsentAckBytes = maxUnsentAckBytes
        return policy
    }

    static func ping(_ index: Int) -> [UInt8] {
        var payload = Frames.bdpPayload
        payload[7] = UInt8(index & 0xff)
        return Frames.frame(type: 0x6, payload: payload)
    }

    static func pingAck(_ index: Int) -> [UInt8] {
        var payload = Frames.bdpPayload
        payload[7] = UInt8(index & 0xff)
        return Frames.frame(type: 0x6, flags: 0x1, payload: payload)
    }

    /// The GOAWAY the responder sends: last stream `lastStreamID`, ENHANCE_YOUR_CALM, "too_many_pings".
    static func calmGoaway(lastStreamID: UInt8 = 0) -> [UInt8] {
        Frames.frame(type: 0x7, payload: [0, 0, 0, lastStreamID, 0, 0, 0, 0xb] + Array("too_many_pings".utf8))
    }

    static func written(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    static func forwarded(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    static func connected(policy: HTTP2PingPolicy, counters: HTTP2ConnectionCounters? = nil) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(role: .server, counters: counters, policy: policy))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(bytes: Frames.preface + Frames.settings))
        _ = try forwarded(channel)
        return channel
    }

    @Test("PINGs less than 5 s apart past the strike budget get GOAWAY(ENHANCE_YOUR_CALM) and a close")
    func strikesOut() throws {
        let counters = HTTP2ConnectionCounters()
        let channel = try Self.connected(policy: Self.policy(maxStrikes: 3), counters: counters)
        // The first PING is no strike; the next three are strikes 1 to 3; the fifth is one too many.
        try channel.writeInbound(ByteBuffer(bytes: Frames.headers + (0..<6).flatMap { Self.ping($0) } + Frames.data))
        #expect(try Self.written(channel) == (0..<4).flatMap { Self.pingAck($0) } + Self.calmGoaway(lastStreamID: 1))
        // Nothing after the offending PING reaches the HTTP/2 handler.
        #expect(try Self.forwarded(channel) == [])
        #expect(!channel.isActive)
        #expect(counters.calmGoawaysSent.load(ordering: .relaxed) == 1)
        #expect(counters.unsentAckOverflows.load(ordering: .relaxed) == 0)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("PINGs at least 5 s apart are never strikes")
    func spacedPingsAreFine() throws {
        let channel = try Self.connected(policy: Self.policy(maxStrikes: 0))
        for index in 0..<20 {
            if index > 0 { channel.embeddedEventLoop.advanceTime(by: .seconds(5)) }
            try channel.writeInbound(ByteBuffer(bytes: Self.ping(index)))
        }
        #expect(try Self.written(channel) == (0..<20).flatMap { Self.pingAck($0) })
        #expect(channel.isActive)
        // With no budget, one PING sooner than 5 s is one strike too many.
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        try channel.writeInbound(ByteBuffer(bytes: Self.ping(20)))
        #expect(try Self.written(channel) == Self.calmGoaway())
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("HEADERS or DATA we send clear the strikes, as grpc-go's bandwidth PINGs under load need")
    func outboundStreamFramesClearStrikes() throws {
        let channel = try Self.connected(policy: Self.policy(maxStrikes: 1))
        // A response (HEADERS, then DATA in pieces that split its frame header) before every
        // PING, as a grpc-go client sees before it sends a bandwidth PING.
        let response = Frames.frame(type: 0x1, flags: 0x4, stream: 1, payload: [0x88]) + Frames.data
        for index in 0..<50 {
            try channel.writeOutbound(ByteBuffer(bytes: response.prefix(13)))
            try channel.writeOutbound(ByteBuffer(bytes: response.dropFirst(13)))
            try channel.writeInbound(ByteBuffer(bytes: Self.ping(index) + Self.ping(index)))
        }
        #expect(try Self.written(channel) == (0..<50).flatMap { Array(response) + Self.pingAck($0) + Self.pingAck($0) })
        #expect(channel.isActive)
        // Other frames we send (here SETTINGS and WINDOW_UPDATE) do not: the strike the last
        // PING made stands, and one more is over the budget.
        try channel.writeOutbound(ByteBuffer(bytes: Frames.settings + Frames.frame(type: 0x8, payload: [0, 0, 1, 0])))
        _ = try Self.written(channel)
        try channel.writeInbound(ByteBuffer(bytes: Self.ping(1)))
        #expect(try Self.written(channel) == Self.calmGoaway())
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("ACKs the socket does not take are capped; past the cap, GOAWAY and a close after the delay")
    func unsentAcksAreBounded() throws {
        let counters = HTTP2ConnectionCounters()
        let socket = StalledSocket()
        let policy = Self.policy(maxUnsentAckBytes: 10 * 17)
        let channel = EmbeddedChannel(handlers: [socket, HTTP2PingResponder(role: .server, counters: counters, policy: policy)])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(bytes: Frames.preface + Frames.settings))
        // Ten unsent ACKs are within the cap; the socket catching up makes room for ten more.
        try channel.writeInbound(ByteBuffer(bytes: (0..<10).flatMap { Self.ping($0) }))
        #expect(socket.heldBytes == 170)
        socket.release()
        try channel.writeInbound(ByteBuffer(bytes: (10..<20).flatMap { Self.ping($0) }))
        #expect(channel.isActive)
        #expect(counters.calmGoawaysSent.load(ordering: .relaxed) == 0)
        // One more while the socket is stuck is over the cap.
        try channel.writeInbound(ByteBuffer(bytes: Self.ping(20)))
        #expect(counters.calmGoawaysSent.load(ordering: .relaxed) == 1)
        #expect(counters.unsentAckOverflows.load(ordering: .relaxed) == 1)
        #expect(counters.maxUnsentAckBytes.load(ordering: .relaxed) == 11 * 17)
        // The GOAWAY cannot be written either; the connection stays open only for the delay, and
        // what the peer sends meanwhile is dropped unanswered.
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(bytes: (21..<100).flatMap { Self.ping($0) }))
        #expect(socket.heldBytes == 11 * 17 + Self.calmGoaway().count)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

/// A socket that takes no bytes until told to: it holds writes (and their promises) back.
final class StalledSocket: ChannelOutboundHandler {
    typealias OutboundIn = IOData
    private var held: [EventLoopPromise<Void>?] = []
    private(set) var heldBytes = 0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        heldBytes += unwrapOutboundIn(data).readableBytes
        held.append(promise)
    }

    func flush(context: ChannelHandlerContext) {}

    /// The socket takes everything held so far.
    func release() {
        let released = held
        held = []
        heldBytes = 0
        for promise in released { promise?.succeed() }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        let failed = held
        held = []
        for promise in failed { promise?.fail(ChannelError.ioOnClosedChannel) }
        context.close(mode: mode, promise: promise)
    }
}
