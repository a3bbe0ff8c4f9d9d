import NIOCore
import Synchronization

/// Counters shared by every connection of a run; read once per phase and by the progress line.
final class ConnectionCounters: Sendable {
    let opened = Atomic<Int>(0)
    let closed = Atomic<Int>(0)
    let goawaysReceived = Atomic<Int>(0)
    let pingsAnswered = Atomic<Int>(0)
}

/// Answers the server's HTTP/2 PINGs on the client side, before they reach the HTTP/2 handler.
///
/// grpc-go servers (real etcd) send a BDP-estimation PING with almost every response. swift-nio-http2
/// counts inbound PINGs against a control-frame budget (about 200 per 30 s) and past it the client
/// closes its own connection with GOAWAY(ENHANCE_YOUR_CALM); a busy benchmark client against etcd
/// would reconnect every few hundred requests and measure that instead of the server. The
/// transport does not expose the budget, so this handler, placed right in front of the
/// `NIOHTTP2Handler`, reads the frame stream, answers each non-ACK PING with its ACK (same payload,
/// RFC 9113 §6.7) and drops it. Every other frame passes through; it also counts GOAWAY frames
/// received, so the report can show connection trouble.
///
/// The mirror of the server's `ClientPingResponder`, except that a server sends no connection
/// preface: the stream starts with a frame header.
final class ServerPingResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let frameHeaderLength = 9
    static let pingPayloadLength = 8
    static let pingFrameType: UInt8 = 0x6
    static let goawayFrameType: UInt8 = 0x7
    static let ackFlag: UInt8 = 0x1

    private enum State {
        /// Between frames: waiting for a full frame header.
        case frameHeader
        /// Inside a frame that is not ours to handle: this many payload bytes still to pass on.
        case passing(remaining: Int)
    }

    private var state: State = .frameHeader
    /// Bytes held back because they might start a PING frame; at most one header plus payload.
    private var pending: ByteBuffer?
    private let counters: ConnectionCounters
    /// False only to demonstrate the problem: PINGs then go to the HTTP/2 handler, and the
    /// handler merely counts connections and GOAWAYs.
    private let answerPings: Bool

    init(counters: ConnectionCounters, answerPings: Bool = true) {
        self.counters = counters
        self.answerPings = answerPings
    }

    func channelActive(context: ChannelHandlerContext) {
        counters.opened.add(1, ordering: .relaxed)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        counters.closed.add(1, ordering: .relaxed)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
            // The HTTP/2 handler writes whole frames synchronously on this event loop, so an ACK
            // written from here can never land inside one of its frames.
            for answer in answers {
                context.write(NIOAny(answer), promise: nil)
            }
            context.flush()
            counters.pingsAnswered.add(answers.count, ordering: .relaxed)
        }
    }

    /// Splits `incoming` into runs to pass on (cut only around PINGs), turns complete PINGs into
    /// ACKs, and leaves in `incoming` only an incomplete frame header or PING.
    private func scan(
        _ incoming: inout ByteBuffer,
        forward: inout [ByteBuffer],
        answers: inout [ByteBuffer],
        allocator: ByteBufferAllocator
    ) {
        let original = incoming
        var runStart = incoming.readerIndex
        scanning: while incoming.readableBytes > 0 {
            switch state {
            case .passing(let remaining):
                let count = min(remaining, incoming.readableBytes)
                incoming.moveReaderIndex(forwardBy: count)
                state = remaining == count ? .frameHeader : .passing(remaining: remaining - count)
            case .frameHeader:
                guard let header = FrameHeader(peekingAt: incoming) else { break scanning }
                if header.type == Self.goawayFrameType {
                    counters.goawaysReceived.add(1, ordering: .relaxed)
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
            guard buffer.readableBytes >= ServerPingResponder.frameHeaderLength,
                let high = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                let low = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt16.self),
                let type = buffer.getInteger(at: buffer.readerIndex + 3, as: UInt8.self),
                let flags = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
            else { return nil }
            length = Int(high) << 16 | Int(low)
            self.type = type
            self.flags = flags
        }

        var isPing: Bool { type == ServerPingResponder.pingFrameType }
        var isAck: Bool { flags & ServerPingResponder.ackFlag != 0 }
    }
}
