import EtcdAPI
import EtcdServer
import EtcdTransport
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// grpc-go clients send a PING with almost every response. Over one connection the server must
/// answer every one and never send GOAWAY (swift-nio-http2 alone would, past ~200 PINGs).
@Suite("PING flood on a real connection")
struct PingFloodTests {
    static let pings = 2_000

    @Test("the server answers 2,000 PINGs on one connection without a GOAWAY")
    func pingFlood() async throws {
        try await withServer { port in
            let (channel, collector) = try await Self.connectRaw(port: port)
            var bytes = ClientPingResponderTests.preface + ClientPingResponderTests.frame(type: 0x4, payload: [])
            for index in 0..<Self.pings {
                var payload = ClientPingResponderTests.bdpPayload
                payload[7] = UInt8(index & 0xff)
                bytes += ClientPingResponderTests.frame(type: 0x6, payload: payload)
            }
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            // Wait until every ACK is in, a GOAWAY arrives or the connection closes.
            for await counts in collector.updates where counts.pingAcks >= Self.pings || counts.goaways > 0 {
                break
            }
            try? await channel.close().get()
            #expect(collector.counts.goaways == 0)
            #expect(collector.counts.pingAcks == Self.pings)
        }
    }

    /// The preface, SETTINGS, then `count` PINGs numbered from `first`.
    static func pings(_ count: Int, from first: Int = 0, preface: Bool = false) -> ByteBuffer {
        var bytes = preface ? ClientPingResponderTests.preface + ClientPingResponderTests.frame(type: 0x4, payload: []) : []
        bytes.reserveCapacity(bytes.count + count * 17)
        for index in first..<(first + count) {
            var payload = ClientPingResponderTests.bdpPayload
            payload[6] = UInt8(index >> 8 & 0xff)
            payload[7] = UInt8(index & 0xff)
            bytes += ClientPingResponderTests.frame(type: 0x6, payload: payload)
        }
        return ByteBuffer(bytes: bytes)
    }

    /// A plain TCP connection to the server whose incoming frames `collector` records.
    /// With `sendsPreface`, the connection preface and an empty SETTINGS go out as soon as the
    /// connection is up, before anything read from the server is handled.
    static func connectRaw(port: Int, answersPings: Bool = false, sendsPreface: Bool = false) async throws -> (
        any Channel, FrameCollector
    ) {
        let collector = FrameCollector(answersPings: answersPings, sendsPreface: sendsPreface)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, collector)
    }

    /// A KV Range over a connection of its own, to show the server still serves others.
    static func rangeSucceeds(port: Int) async throws {
        try await withKVClient(port: port) { kv, _ in
            var put = Etcdserverpb_PutRequest()
            put.key = Data("after-flood")
            put.value = Data("1")
            _ = try await kv.put(put)
            var range = Etcdserverpb_RangeRequest()
            range.key = Data("after-flood")
            let response = try await kv.range(range)
            #expect(response.kvs.map(\.value) == [Data("1")])
        }
    }

    @Test("a client that only pings, and reads, gets GOAWAY(ENHANCE_YOUR_CALM, too_many_pings) past 10,000 strikes")
    func strikesOut() async throws {
        try await withServerHandle { server, port in
            let (channel, collector) = try await Self.connectRaw(port: port)
            // The default budget is 10,000 strikes: the 10,002nd PING is one too many.
            try await channel.writeAndFlush(Self.pings(10_100, preface: true)).get()
            // The stream of frames from the server ends when it closes the connection.
            for await _ in collector.updates {}
            let counts = collector.counts
            #expect(counts.goaways == 1)
            #expect(counts.lastGoaway?.errorCode == 0xb)
            #expect(counts.lastGoaway?.debugData == "too_many_pings")
            #expect(counts.pingAcks == 10_001)
            #expect(server.connectionCounters.calmGoawaysSent.load(ordering: .relaxed) == 1)
            try await Self.rangeSucceeds(port: port)
        }
    }

    @Test("server keepalive: an idle client that answers PINGs keeps its connection; one that does not is dropped after the timeout")
    func serverKeepalive() async throws {
        try await withServerHandle(configure: {
            // A short interval; a timeout long enough for a loaded machine to answer in.
            $0.grpcKeepaliveInterval = .milliseconds(500)
            $0.grpcKeepaliveTimeout = .seconds(3)
        }) { _, port in
            // Each client's preface goes out as its connection comes up: were it written later by
            // the test, a loaded machine could let the server's first PING (0.5 s after the
            // connection) arrive and be answered before it, and an ACK ahead of the preface is a
            // protocol error that ends the connection.
            let (answering, answered) = try await Self.connectRaw(port: port, answersPings: true, sendsPreface: true)
            let (silent, unanswered) = try await Self.connectRaw(port: port, sendsPreface: true)
            let started = ContinuousClock.now
            // The silent one: pinged after an idle interval, closed a timeout later (or by this
            // test after 12 s, which fails it).
            let watchdog = Task {
                try await Task.sleep(for: .seconds(12))
                try? await silent.close()
            }
            for await _ in unanswered.updates {}
            watchdog.cancel()
            let elapsed = ContinuousClock.now - started
            #expect(unanswered.counts.pings >= 1)
            #expect(elapsed >= .milliseconds(3_400), "closed after \(elapsed)")
            #expect(elapsed < .seconds(10), "closed after \(elapsed)")
            // The answering one saw PINGs too (one per idle interval), answered them, and is still open.
            #expect(answered.counts.pings >= 2)
            #expect(answering.isActive)
            try await answering.close()
        }
    }

    @Test("a client that floods PINGs and never reads holds a bounded amount of ACKs, then is cut off")
    func neverReads() async throws {
        try await withServerHandle { server, port in
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.autoRead, value: false)
                // A small receive window fills fast, so the server's socket stops taking ACKs.
                .channelOption(.socketOption(.so_rcvbuf), value: 4_096)
                .connect(host: "127.0.0.1", port: port).get()
            let deadline = ContinuousClock.now + .seconds(20)
            var sent = 0
            var first = true
            // Whichever limit trips first (unread ACKs or, after 10,001 PINGs, strikes), the
            // connection must end while the server holds little; the figures say which.
            while ContinuousClock.now < deadline {
                do {
                    try await channel.writeAndFlush(Self.pings(500, from: sent, preface: first)).get()
                } catch {
                    break  // the server closed the connection
                }
                first = false
                sent += 500
            }
            try await channel.closeFuture.get()
            let counters = server.connectionCounters
            print("never-reading flood: \(sent) PINGs sent, \(counters.pingsAnswered.load(ordering: .relaxed)) answered, "
                + "most unsent ACK bytes \(counters.maxUnsentAckBytes.load(ordering: .relaxed)), "
                + "unsent-ACK GOAWAYs \(counters.unsentAckOverflows.load(ordering: .relaxed))")
            #expect(ContinuousClock.now < deadline)
            #expect(counters.calmGoawaysSent.load(ordering: .relaxed) == 1)
            // The cap plus at most one read's ACKs (NIO reads at most 64 KiB).
            #expect(counters.maxUnsentAckBytes.load(ordering: .relaxed) <= 128 * 1024)
            try await Self.rangeSucceeds(port: port)
        }
    }
}

/// Counts PING, PING ACK and GOAWAY frames in the byte stream from the server; answers the
/// server's own PINGs if `answersPings`.
final class FrameCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    struct Goaway: Sendable { var errorCode: UInt32; var debugData: String }
    struct Counts: Sendable {
        var pingAcks = 0
        var pings = 0
        var goaways = 0
        var lastGoaway: Goaway?
        /// RST_STREAM frames: stream and error code.
        var resets: [(stream: UInt32, code: UInt32)] = []
        /// The parameters of the server's SETTINGS frames (not their ACKs).
        var settings: [UInt16: UInt32] = [:]
        /// Every frame: type and stream.
        var frames: [(type: UInt8, stream: UInt32)] = []
    }
    private let state = Mutex((buffer: ByteBuffer(), counts: Counts()))
    private let stream = AsyncStream<Counts>.makeStream()
    private let answersPings: Bool
    private let sendsPreface: Bool

    init(answersPings: Bool = false, sendsPreface: Bool = false) {
        self.answersPings = answersPings
        self.sendsPreface = sendsPreface
    }

    func channelActive(context: ChannelHandlerContext) {
        if sendsPreface {
            context.writeAndFlush(wrapOutboundOut(PingFloodTests.pings(0, preface: true)), promise: nil)
        }
        context.fireChannelActive()
    }

    var counts: Counts { state.withLock { $0.counts } }
    /// The counts after every read; finishes when the connection closes.
    var updates: AsyncStream<Counts> { stream.stream }

    func channelInactive(context: ChannelHandlerContext) {
        stream.continuation.finish()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        var answers: [[UInt8]] = []
        state.withLock { state in
            state.buffer.writeBuffer(&incoming)
            while state.buffer.readableBytes >= 9,
                let high = state.buffer.getInteger(at: state.buffer.readerIndex, as: UInt8.self),
                let low = state.buffer.getInteger(at: state.buffer.readerIndex + 1, as: UInt16.self),
                let type = state.buffer.getInteger(at: state.buffer.readerIndex + 3, as: UInt8.self),
                let flags = state.buffer.getInteger(at: state.buffer.readerIndex + 4, as: UInt8.self)
            {
                let length = Int(high) << 16 | Int(low)
                guard state.buffer.readableBytes >= 9 + length else { break }
                if type == 0x7, length >= 8,
                    let code = state.buffer.getInteger(at: state.buffer.readerIndex + 13, as: UInt32.self),
                    let debug = state.buffer.getString(at: state.buffer.readerIndex + 17, length: length - 8)
                {
                    state.counts.lastGoaway = Goaway(errorCode: code, debugData: debug)
                }
                if type == 0x6 && flags & 0x1 == 0 {
                    state.counts.pings += 1
                    if answersPings, let payload = state.buffer.getBytes(at: state.buffer.readerIndex + 9, length: length) {
                        answers.append(ClientPingResponderTests.frame(type: 0x6, flags: 0x1, payload: payload))
                    }
                }
                let payloadStart = state.buffer.readerIndex + 9
                if let stream = state.buffer.getInteger(at: payloadStart - 4, as: UInt32.self) {
                    state.counts.frames.append((type, stream & 0x7fff_ffff))
                }
                if type == 0x3, length == 4, let stream = state.buffer.getInteger(at: payloadStart - 4, as: UInt32.self),
                    let code = state.buffer.getInteger(at: payloadStart, as: UInt32.self)
                {
                    state.counts.resets.append((stream & 0x7fff_ffff, code))
                }
                if type == 0x4 && flags & 0x1 == 0 {
                    for offset in stride(from: 0, to: length - length % 6, by: 6) {
                        if let id = state.buffer.getInteger(at: payloadStart + offset, as: UInt16.self),
                            let value = state.buffer.getInteger(at: payloadStart + offset + 2, as: UInt32.self)
                        {
                            state.counts.settings[id] = value
                        }
                    }
                }
                state.buffer.moveReaderIndex(forwardBy: 9 + length)
                if type == 0x6 && flags & 0x1 != 0 { state.counts.pingAcks += 1 }
                if type == 0x7 { state.counts.goaways += 1 }
            }
            state.buffer.discardReadBytes()
            stream.continuation.yield(state.counts)
        }
        for answer in answers {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: answer)), promise: nil)
        }
    }
}
