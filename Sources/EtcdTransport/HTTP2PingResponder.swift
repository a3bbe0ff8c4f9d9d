public import NIOCore
public import Synchronization

/// Answers the peer's HTTP/2 PING frames itself, before they reach the HTTP/2 handler.
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
/// On the server this also means client keepalive PINGs are accepted at any rate, where etcd
/// refuses pings without active streams more often than every 5 s; being more lenient never
/// disconnects a client.
public final class HTTP2PingResponder: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// Which end of the connection this handler is on: a server first reads the client's
    /// connection preface, which has no frame header; a client reads frames from the first byte.
    public enum Role: Sendable {
        case server
        case client
    }

    static let frameHeaderLength = 9
    static let pingPayloadLength = 8
    static let pingFrameType: UInt8 = 0x6
    static let goawayFrameType: UInt8 = 0x7
    static let ackFlag: UInt8 = 0x1
    /// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
    static let prefaceLength = 24

    private enum State {
        /// Bytes of the client preface still to pass on.
        case preface(remaining: Int)
        /// Between frames: waiting for a full frame header.
        case frameHeader
        /// Inside a frame that is not ours to handle: this many payload bytes still to pass on.
        case passing(remaining: Int)
    }

    private var state: State
    /// Bytes held back because they might start a PING frame; never more than one frame header
    /// plus a PING payload.
    private var pending: ByteBuffer?
    private let counters: HTTP2ConnectionCounters?
    private let answerPings: Bool

    /// - Parameters:
    ///   - counters: where to count connections, PINGs answered and GOAWAYs received, if anywhere.
    ///   - answerPings: false only to demonstrate the problem this handler solves: PINGs then go
    ///     on to the HTTP/2 handler and the handler merely counts.
    public init(role: Role, counters: HTTP2ConnectionCounters? = nil, answerPings: Bool = true) {
        state = role == .server ? .preface(remaining: Self.prefaceLength) : .frameHeader
        self.counters = counters
        self.answerPings = answerPings
    }

    public func channelActive(context: ChannelHandlerContext) {
        counters?.opened.add(1, ordering: .relaxed)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        counters?.closed.add(1, ordering: .relaxed)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
        scan(&incoming, forward: &forward, answers: &answers, allocator: context.channel.allocator)
        if incoming.readableBytes > 0 {
            pending = incoming
        }
        for slice in forward {
            context.fireChannelRead(wrapInboundOut(slice))
        }
        if !answers.isEmpty {
            // Written from here, the ACK goes straight to the socket; the HTTP/2 handler writes
            // whole frames synchronously on this event loop, so an ACK can never land inside one
            // of its frames.
            for answer in answers {
                context.write(NIOAny(answer), promise: nil)
            }
            context.flush()
            counters?.pingsAnswered.add(answers.count, ordering: .relaxed)
        }
    }

    /// Splits `incoming` into runs of bytes to pass on (cut only around PINGs), turns complete
    /// PINGs into ACKs, and leaves in `incoming` only an incomplete frame header or PING.
    private func scan(
        _ incoming: inout ByteBuffer,
        forward: inout [ByteBuffer],
        answers: inout [ByteBuffer],
        allocator: ByteBufferAllocator
    ) {
        // NIO only slices readable bytes, so runs are cut from an untouched view of the input.
        let original = incoming
        var runStart = incoming.readerIndex
        scanning: while incoming.readableBytes > 0 {
            switch state {
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

    /// The fixed 9-byte header of an HTTP/2 frame (RFC 9113 §4.1).
    struct FrameHeader {
        var length: Int
        var type: UInt8
        var flags: UInt8

        init?(peekingAt buffer: ByteBuffer) {
            guard buffer.readableBytes >= HTTP2PingResponder.frameHeaderLength,
                let high = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                let low = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt16.self),
                let type = buffer.getInteger(at: buffer.readerIndex + 3, as: UInt8.self),
                let flags = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
            else { return nil }
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

    public init() {}
}
