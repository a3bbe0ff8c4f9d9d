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
            let collector = FrameCollector()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
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
}

/// Counts PING ACK and GOAWAY frames in the byte stream from the server.
final class FrameCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    struct Counts: Sendable { var pingAcks = 0; var goaways = 0 }
    private let state = Mutex((buffer: ByteBuffer(), counts: Counts()))
    private let stream = AsyncStream<Counts>.makeStream()

    var counts: Counts { state.withLock { $0.counts } }
    /// The counts after every read; finishes when the connection closes.
    var updates: AsyncStream<Counts> { stream.stream }

    func channelInactive(context: ChannelHandlerContext) {
        stream.continuation.finish()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
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
                state.buffer.moveReaderIndex(forwardBy: 9 + length)
                if type == 0x6 && flags & 0x1 != 0 { state.counts.pingAcks += 1 }
                if type == 0x7 { state.counts.goaways += 1 }
            }
            state.buffer.discardReadBytes()
            stream.continuation.yield(state.counts)
        }
    }
}
