public import NIOCore
public import Synchronization

/// Answers the peer's HTTP/2 PING frames itself, before they reach the HTTP/2 handler, within
/// limits that bound what a flooding peer can cost.
///
/// grpc-go peers send a bandwidth-estimation PING with almost every frame they receive: clients
/// (etcdctl, clientv3, Kubernetes) to our server, and real etcd's server to our clients.
/// swift-nio-http2 counts inbound PINGs against a control-frame budget (about 200 per 30 s) and,
/// past it, closes the connection with GOAWAY(ENHANCE_YOUR_CALM): a busy Go client would lose its
/// connection, and its watch streams, every ~200 requests, and a busy Swift client of etcd would
/// drop its own. grpc-swift's transport does not expose that budget, so this handler sits right in
/// front of the `NIOHTTP2Handler`, reads the frame stream, answers each PING with its ACK (same
/// payload, as RFC 9113 §6.7 requires) and drops it from what the HTTP/2 handler sees. Every other
/// frame, and PING ACKs answering our own PINGs (keepalive), pass through untouched.
///
/// Answering every PING without limits is the CVE-2019-9512 "ping flood": a peer that sends PINGs
/// and never reads makes the ACKs pile up in memory. The policy (``HTTP2PingPolicy``) has two
/// limits, each ending the connection with GOAWAY(ENHANCE_YOUR_CALM, debug data "too_many_pings"),
/// as grpc-go's server does, and then closing it:
///
/// - **Unsent ACK bytes** (memory). ACKs written but not yet taken by the socket are counted; when
///   they exceed `maxUnsentAckBytes` (64 KiB, about 3,800 ACKs) after a read's ACKs are flushed,
///   the peer is not reading what it asks for. A peer that reads never gets near: grpc-go has at
///   most one bandwidth PING and one keepalive PING unanswered at a time. So this handler holds at
///   most that limit plus the ACKs of one read (NIO reads at most 64 KiB, so at most as many ACK
///   bytes) however the peer behaves.
/// - **Ping strikes** (CPU), grpc-go's keepalive enforcement: a PING that comes less than
///   `minimumInterval` (5 s, etcd's `--grpc-keepalive-min-time`) after the previous one is a
///   strike, unless HEADERS or DATA went out since the previous PING, which clears the strikes
///   (grpc-go clients send bandwidth PINGs only after receiving DATA, so they never strike under
///   load). grpc-go allows 2 strikes; this allows `maxStrikes` (10,000), so that clients and tools
///   that burst PINGs on an idle connection keep being answered, while a peer that only pings gets
///   at most that many ACKs (about 170 KB, a few milliseconds of CPU) per connection. A client that
///   keeps pinging more often than every 5 s with no call open is disconnected after 10,000 such
///   PINGs; etcd disconnects it after 3.
///
/// After the GOAWAY the handler drops everything the peer sends, and closes the connection once the
/// GOAWAY is written, or after `closeDelay` if the peer does not read it.
public final class HTTP2PingResponder: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = IOData
    public typealias OutboundOut = IOData

    /// Which end of the connection this handler is on: a server first reads the client's
    /// connection preface, which has no frame header; a client reads frames from the first byte.
    public enum Role: Sendable {
        case server
        case client
    }

    static let frameHeaderLength = 9
    static let pingPayloadLength = 8
    static let pingAckLength = frameHeaderLength + pingPayloadLength
    static let dataFrameType: UInt8 = 0x0
    static let headersFrameType: UInt8 = 0x1
    static let pingFrameType: UInt8 = 0x6
    static let goawayFrameType: UInt8 = 0x7
    static let ackFlag: UInt8 = 0x1
    /// RFC 9113 §7: ENHANCE_YOUR_CALM.
    static let enhanceYourCalm: UInt32 = 0xb
    /// grpc-go's debug data for this GOAWAY; its clients back off their keepalive when they see it.
    static let tooManyPings = "too_many_pings"
    /// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
    static let prefaceLength = 24

    private enum State {
        /// Bytes of the client preface still to pass on.
        case preface(remaining: Int)
        /// Between frames: waiting for a full frame header.
        case frameHeader
        /// Inside a frame that is not ours to handle: this many payload bytes still to pass on.
        case passing(remaining: Int)
        /// GOAWAY sent: everything the peer sends is dropped until the connection closes.
        case calmingDown
    }

    private var state: State
    /// Bytes held back because they might start a PING frame; never more than one frame header
    /// plus a PING payload.
    private var pending: ByteBuffer?
    private let counters: HTTP2ConnectionCounters?
    private let answerPings: Bool
    private let policy: HTTP2PingPolicy
    private var strikes = 0
    private var lastPingAt: NIODeadline?
    /// Whether HEADERS or DATA went out since the last PING came in (clears the strikes).
    private var sentStreamFrameSincePing = false
    /// ACK bytes handed to the pipeline and not yet written to the socket.
    private var unsentAckBytes = 0
    /// The highest stream the peer opened, for the GOAWAY's last-stream-ID.
    private var highestPeerStreamID: UInt32 = 0
    private var outbound: OutboundFrames
    private var closeTimer: Scheduled<Void>?

    /// - Parameters:
    ///   - counters: where to count connections, PINGs answered and GOAWAYs, if anywhere.
    ///   - answerPings: false only to demonstrate the problem this handler solves: PINGs then go
    ///     on to the HTTP/2 handler and the handler merely counts.
    ///   - policy: the limits on answering PINGs.
    public init(
        role: Role,
        counters: HTTP2ConnectionCounters? = nil,
        answerPings: Bool = true,
        policy: HTTP2PingPolicy = HTTP2PingPolicy()
    ) {
        state = role == .server ? .preface(remaining: Self.prefaceLength) : .frameHeader
        // A client's HTTP/2 handler writes the preface, which has no frame header, first.
        outbound = OutboundFrames(skip: role == .client ? Self.prefaceLength : 0)
        self.counters = counters
        self.answerPings = answerPings
        self.policy = policy
    }

    public func channelActive(context: ChannelHandlerContext) {
        counters?.opened.add(1, ordering: .relaxed)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        counters?.closed.add(1, ordering: .relaxed)
        closeTimer?.cancel()
        closeTimer = nil
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        closeTimer?.cancel()
        closeTimer = nil
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if outbound.observe(unwrapOutboundIn(data)) {
            sentStreamFrameSincePing = true
        }
        context.write(data, promise: promise)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .calmingDown = state { return }
        var incoming = unwrapInboundIn(data)
        if var held = pending {
            pending = nil
            held.writeBuffer(&incoming)
            incoming = held
        }
        // Slices share the read buffer's storage: passing data on copies nothing. Most reads hold
        // no PING and give exactly one slice.
        var forward: [ByteBuffer] = []
        var answers: [ByteBuffer] = []
        scan(&incoming, forward: &forward, answers: &answers, now: context.eventLoop.now, allocator: context.channel.allocator)
        var calm = false
        if case .calmingDown = state {
            // Struck out: what came with the offending PING is dropped, the PINGs before it are
            // still answered.
            calm = true
        } else {
            if incoming.readableBytes > 0 {
                pending = incoming
            }
            for slice in forward {
                context.fireChannelRead(wrapInboundOut(slice))
            }
        }
        if !answers.isEmpty && write(answers, context: context) {
            // The peer leaves too many ACKs unread.
            counters?.unsentAckOverflows.add(1, ordering: .relaxed)
            state = .calmingDown
            calm = true
        }
        if calm {
            calmDown(context: context)
        }
    }

    /// Writes one read's ACKs and counts them as unsent until the socket takes the last of them;
    /// true if that leaves more unsent than the policy allows.
    private func write(_ answers: [ByteBuffer], context: ChannelHandlerContext) -> Bool {
        let bytes = answers.count * Self.pingAckLength
        unsentAckBytes += bytes
        // Writes complete in order, so the last ACK's promise stands for all of them.
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { _ in self.unsentAckBytes -= bytes }
        // Written from here, the ACK goes straight to the socket; the HTTP/2 handler writes
        // whole frames synchronously on this event loop, so an ACK can never land inside one
        // of its frames.
        for (index, answer) in answers.enumerated() {
            context.write(NIOAny(answer), promise: index == answers.count - 1 ? written : nil)
        }
        context.flush()
        counters?.pingsAnswered.add(answers.count, ordering: .relaxed)
        counters?.maxUnsentAckBytes.max(unsentAckBytes, ordering: .relaxed)
        return unsentAckBytes > policy.maxUnsentAckBytes
    }

    /// Says GOAWAY(ENHANCE_YOUR_CALM) and closes the connection once that is written, or after
    /// the policy's delay if the peer does not read it.
    private func calmDown(context: ChannelHandlerContext) {
        pending = nil
        counters?.calmGoawaysSent.add(1, ordering: .relaxed)
        let goaway = Self.goaway(
            lastStreamID: highestPeerStreamID, errorCode: Self.enhanceYourCalm, debugData: Self.tooManyPings,
            allocator: context.channel.allocator
        )
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(goaway), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: policy.closeDelay) {
            context.close(promise: nil)
        }
    }

    /// Counts a PING against the strike budget; true if it goes over.
    private func strikeOut(at now: NIODeadline) -> Bool {
        defer { lastPingAt = now }
        if sentStreamFrameSincePing {
            // grpc-go clears the strikes whenever the server has sent HEADERS or DATA.
            sentStreamFrameSincePing = false
            strikes = 0
            return false
        }
        if let lastPingAt, now < lastPingAt + policy.minimumInterval {
            strikes += 1
        }
        return strikes > policy.maxStrikes
    }

    /// Splits `incoming` into runs of bytes to pass on (cut only around PINGs), turns complete
    /// PINGs into ACKs, and leaves in `incoming` only an incomplete frame header or PING.
    private func scan(
        _ incoming: inout ByteBuffer,
        forward: inout [ByteBuffer],
        answers: inout [ByteBuffer],
        now: NIODeadline,
        allocator: ByteBufferAllocator
    ) {
        // NIO only slices readable bytes, so runs are cut from an untouched view of the input.
        let original = incoming
        var runStart = incoming.readerIndex
        scanning: while incoming.readableBytes > 0 {
            switch state {
            case .calmingDown:
                return
            case .preface(let remaining), .passing(let remaining):
                let count = min(remaining, incoming.readableBytes)
                incoming.moveReaderIndex(forwardBy: count)
                let left = remaining - count
                if case .preface = state {
                    state = left == 0 ? .frameHeader : .preface(remaining: left)
                } else {
                    state = left == 0 ? .frameHeader : .passing(remaining: left)
                }
            case .frameHeader:
                guard let header = FrameHeader(peekingAt: incoming) else { break scanning }
                if header.type == Self.goawayFrameType {
                    counters?.goawaysReceived.add(1, ordering: .relaxed)
                } else if header.type == Self.headersFrameType {
                    highestPeerStreamID = max(highestPeerStreamID, header.streamID)
                }
                guard answerPings && header.isPing && !header.isAck && header.length == Self.pingPayloadLength
                else {
                    // Not ours (or malformed, which the HTTP/2 handler reports properly).
                    incoming.moveReaderIndex(forwardBy: Self.frameHeaderLength)
                    state = header.length == 0 ? .frameHeader : .passing(remaining: header.length)
                    continue
                }
                guard incoming.readableBytes >= Self.frameHeaderLength + Self.pingPayloadLength else {
                    break scanning
                }
                if incoming.readerIndex > runStart,
                    let run = original.getSlice(at: runStart, length: incoming.readerIndex - runStart)
                {
                    forward.append(run)
                }
                if strikeOut(at: now) {
                    state = .calmingDown
                    return
                }
                incoming.moveReaderIndex(forwardBy: Self.frameHeaderLength)
                guard let payload = incoming.readSlice(length: Self.pingPayloadLength) else { break scanning }
                answers.append(Self.pingAck(payload: payload, allocator: allocator))
                runStart = incoming.readerIndex
            }
        }
        if incoming.readerIndex > runStart,
            let run = original.getSlice(at: runStart, length: incoming.readerIndex - runStart)
        {
            forward.append(run)
        }
    }

    static func pingAck(payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var frame = allocator.buffer(capacity: frameHeaderLength + pingPayloadLength)
        frame.writeInteger(UInt8(0))
        frame.writeInteger(UInt16(pingPayloadLength))
        frame.writeInteger(pingFrameType)
        frame.writeInteger(ackFlag)
        frame.writeInteger(UInt32(0))
        var payload = payload
        frame.writeBuffer(&payload)
        return frame
    }

    /// A GOAWAY frame (RFC 9113 §6.8).
    static func goaway(lastStreamID: UInt32, errorCode: UInt32, debugData: String, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        let length = 8 + debugData.utf8.count
        var frame = allocator.buffer(capacity: frameHeaderLength + length)
        frame.writeInteger(UInt8(length >> 16 & 0xff))
        frame.writeInteger(UInt16(length & 0xffff))
        frame.writeInteger(goawayFrameType)
        frame.writeInteger(UInt8(0))
        frame.writeInteger(UInt32(0))
        frame.writeInteger(lastStreamID & 0x7fff_ffff)
        frame.writeInteger(errorCode)
        frame.writeString(debugData)
        return frame
    }

    /// The fixed 9-byte header of an HTTP/2 frame (RFC 9113 §4.1).
    struct FrameHeader {
        var length: Int
        var type: UInt8
        var flags: UInt8
        var streamID: UInt32

        init?(peekingAt buffer: ByteBuffer) {
            guard buffer.readableBytes >= HTTP2PingResponder.frameHeaderLength,
                let high = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                let low = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt16.self),
                let type = buffer.getInteger(at: buffer.readerIndex + 3, as: UInt8.self),
                let flags = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self),
                let streamID = buffer.getInteger(at: buffer.readerIndex + 5, as: UInt32.self)
            else { return nil }
            self.streamID = streamID & 0x7fff_ffff
            length = Int(high) << 16 | Int(low)
            self.type = type
            self.flags = flags
        }

        var isPing: Bool { type == HTTP2PingResponder.pingFrameType }
        var isAck: Bool { flags & HTTP2PingResponder.ackFlag != 0 }
    }
}

/// What connections went through, shared by every connection that reports to it.
public final class HTTP2ConnectionCounters: Sendable {
    public let opened = Atomic<Int>(0)
    public let closed = Atomic<Int>(0)
    public let goawaysReceived = Atomic<Int>(0)
    public let pingsAnswered = Atomic<Int>(0)
    /// GOAWAY(ENHANCE_YOUR_CALM) frames sent because a peer broke the PING policy.
    public let calmGoawaysSent = Atomic<Int>(0)
    /// Of those, the ones sent because a peer left too many ACK bytes unread (the rest are for
    /// too many ping strikes).
    public let unsentAckOverflows = Atomic<Int>(0)
    /// The most PING ACK bytes any connection held unsent at once.
    public let maxUnsentAckBytes = Atomic<Int>(0)

    public init() {}
}

/// Limits on answering a peer's PINGs; see ``HTTP2PingResponder`` for the policy.
public struct HTTP2PingPolicy: Sendable {
    /// A PING sooner than this after the previous one, with no HEADERS or DATA sent in between, is
    /// a strike (etcd's `--grpc-keepalive-min-time`, grpc-go's `EnforcementPolicy.MinTime`).
    public var minimumInterval: TimeAmount = .seconds(5)
    /// Strikes allowed before GOAWAY (grpc-go allows 2).
    public var maxStrikes = 10_000
    /// Most ACK bytes left unsent by the socket after a read's ACKs are flushed.
    public var maxUnsentAckBytes = 64 * 1024
    /// How long a GOAWAY that cannot be written may hold the connection open.
    public var closeDelay: TimeAmount = .seconds(1)

    public init() {}
}

/// Which HTTP/2 frames our side writes: only their headers are looked at, to see HEADERS and DATA
/// go out.
struct OutboundFrames {
    /// Bytes to pass before the next frame header: the client preface, or a frame's payload.
    private var skip: Int
    /// The part of a frame header seen so far (at most 9 bytes, in `header`).
    private var header: [UInt8] = []

    init(skip: Int) {
        self.skip = skip
        header.reserveCapacity(HTTP2PingResponder.frameHeaderLength)
    }

    /// Follows `data` through the frame stream; true if a HEADERS or DATA frame starts in it.
    mutating func observe(_ data: IOData) -> Bool {
        switch data {
        case .fileRegion(let region):
            // Only ever a DATA payload.
            skip = max(0, skip - region.readableBytes)
            return false
        case .byteBuffer(let buffer):
            var sawStreamFrame = false
            let bytes = buffer.readableBytesView
            var index = bytes.startIndex
            while index < bytes.endIndex {
                if skip > 0 {
                    let step = min(skip, bytes.endIndex - index)
                    skip -= step
                    index += step
                    continue
                }
                header.append(bytes[index])
                index += 1
                guard header.count == HTTP2PingResponder.frameHeaderLength else { continue }
                let type = header[3]
                if type == HTTP2PingResponder.dataFrameType || type == HTTP2PingResponder.headersFrameType {
                    sawStreamFrame = true
                }
                skip = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                header.removeAll(keepingCapacity: true)
            }
            return sawStreamFrame
        }
    }
}
