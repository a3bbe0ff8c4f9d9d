import NIOCore

/// Answers the client's HTTP/2 PING frames itself, before they reach the HTTP/2 handler.
///
/// grpc-go clients (etcdctl, clientv3, Kubernetes) send a bandwidth-estimation PING with almost
/// every response they receive. swift-nio-http2 counts inbound PINGs against a control-frame budget
/// (about 200 per 30 s) and, past it, closes the connection with GOAWAY(ENHANCE_YOUR_CALM); a busy
/// Go client would lose its connection, and its watch streams, every ~200 requests. The transport
/// does not expose that budget, so this handler sits in front of the HTTP/2 handler, reads the
/// frame stream, answers each PING with its ACK (same payload, as RFC 9113 §6.7 requires) and drops
/// it from what the HTTP/2 handler sees. Every other frame, and PING ACKs answering the server's
/// own keepalive PINGs, pass through untouched.
///
/// This also means client keepalive PINGs are accepted at any rate, where etcd would refuse pings
/// without active streams more often than every 5 s; being more lenient never disconnects a client.
final class ClientPingResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let frameHeaderLength = 9
    static let pingPayloadLength = 8
    static let pingFrameType: UInt8 = 0x6
    static let ackFlag: UInt8 = 0x1
    /// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": the client's connection preface, which has no frame
    /// header of its own.
    static let prefaceLength = 24

    private enum State {
        /// Bytes of the client preface still to pass on.
        case preface(remaining: Int)
        /// Between frames: waiting for a full frame header.
        case frameHeader
        /// Inside a frame that is not ours to handle: this many payload bytes still to pass on.
        case passing(remaining: Int)
    }

    private var state: State = .preface(remaining: ClientPingResponder.prefaceLength)
    /// Bytes held back because they might start a PING frame; never more than one frame header
    /// plus a PING payload.
    private var pending: ByteBuffer?
    private(set) var pingsAnswered = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var held = pending {
            pending = nil
            held.writeBuffer(&incoming)
            incoming = held
        }
        // Slices share the read buffer's storage: passing data on copies nothing.
        var forward: [ByteBuffer] = []
        var answers: [ByteBuffer] = []
        scan(&incoming, forward: &forward, answers: &answers)
        if incoming.readableBytes > 0 {
            pending = incoming
        }
        for slice in forward {
            context.fireChannelRead(wrapInboundOut(slice))
        }
        if !answers.isEmpty {
            // Written from here, the ACK goes straight to the socket; the HTTP/2 handler writes
            // whole frames synchronously, so an ACK can never land inside one of its frames.
            for answer in answers {
                context.write(NIOAny(answer), promise: nil)
            }
            context.flush()
        }
    }

    /// Splits `incoming` into runs of bytes to pass on (split only around PINGs), turns complete
    /// PINGs into ACKs, and leaves in `incoming` only an incomplete frame header or PING.
    private func scan(_ incoming: inout ByteBuffer, forward: inout [ByteBuffer], answers: inout [ByteBuffer]) {
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
                guard header.isPing && !header.isAck && header.length == Self.pingPayloadLength else {
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
                answers.append(Self.pingAck(payload: payload, allocator: ByteBufferAllocator()))
                pingsAnswered += 1
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
            guard buffer.readableBytes >= ClientPingResponder.frameHeaderLength,
                let high = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                let low = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt16.self),
                let type = buffer.getInteger(at: buffer.readerIndex + 3, as: UInt8.self),
                let flags = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
            else { return nil }
            length = Int(high) << 16 | Int(low)
            self.type = type
            self.flags = flags
        }

        var isPing: Bool { type == ClientPingResponder.pingFrameType }
        var isAck: Bool { flags & ClientPingResponder.ackFlag != 0 }
    }
}
