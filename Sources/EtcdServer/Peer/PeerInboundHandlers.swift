import EtcdPeer
import EtcdRaft
import Logging
import NIOCore

/// What an inbound peer connection yields: its handshake once, then batches of messages.
enum PeerInbound: Sendable {
    case handshake(PeerHandshake)
    case batch([Message])
}

/// Why an inbound connection was closed.
enum PeerInboundError: Error, Sendable, CustomStringConvertible {
    case handshake(PeerHandshakeError)
    case frame(PeerCodecError)

    var description: String {
        switch self {
        case .handshake(let error): error.description
        case .frame(let error): error.description
        }
    }
}

/// Splits an inbound connection into its handshake and its frames. Every byte is the peer's and
/// untrusted: an oversized frame is refused from its 4-byte prefix alone (nothing is buffered
/// for it), and a malformed one is an error that closes the connection, never a trap.
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerInbound

    let codec: PeerMessageCodec
    let localMember: NodeID
    let clusterID: UInt64
    private var handshakeDone = false

    init(codec: PeerMessageCodec, localMember: NodeID, clusterID: UInt64) {
        self.codec = codec
        self.localMember = localMember
        self.clusterID = clusterID
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard handshakeDone else {
            guard let bytes = buffer.readBytes(length: PeerHandshake.byteCount) else { return .needMoreData }
            do throws(PeerHandshakeError) {
                let handshake = try PeerHandshake.decode(bytes, localMember: localMember, clusterID: clusterID)
                handshakeDone = true
                context.fireChannelRead(wrapInboundOut(.handshake(handshake)))
                return .continue
            } catch {
                throw PeerInboundError.handshake(error)
            }
        }
        let prefixBytes = PeerMessageCodec.lengthPrefixBytes
        guard let prefix = buffer.getBytes(at: buffer.readerIndex, length: prefixBytes) else { return .needMoreData }
        let announced: Int?
        do throws(PeerCodecError) {
            announced = try codec.bodyLength(prefix: prefix)
        } catch {
            throw PeerInboundError.frame(error)
        }
        guard let length = announced, buffer.readableBytes >= prefixBytes + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: prefixBytes)
        let body = buffer.readBytes(length: length) ?? []
        do throws(PeerCodecError) {
            let messages = try codec.decode(body: body)
            context.fireChannelRead(wrapInboundOut(.batch(messages)))
            return .continue
        } catch {
            throw PeerInboundError.frame(error)
        }
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        // A partial frame at EOF is simply lost with the connection: the sender reconnects.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Where decoded batches go: the transport's member ID, counters, logger and `receive`.
struct PeerInboundSink: Sendable {
    let localMember: NodeID
    let counters: PeerTransportCounters
    let logger: Logger
    let receive: @Sendable ([Message]) -> Void
    let handshakeTimeout: Duration
}

/// The last handler of an inbound connection: remembers who the handshake said is speaking,
/// drops messages that claim another sender (a member cannot speak for another) or another
/// recipient, and hands the rest to `receive` on the event loop. Any error closes the
/// connection, logged once.
final class PeerReceiveHandler: ChannelInboundHandler {
    typealias InboundIn = PeerInbound

    private let sink: PeerInboundSink
    private var sender: NodeID?
    private var failed = false
    private var handshakeDeadline: Scheduled<Void>?

    init(sink: PeerInboundSink) {
        self.sink = sink
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let counters = sink.counters
        handshakeDeadline = context.eventLoop.scheduleTask(in: TimeAmount(sink.handshakeTimeout)) {
            counters.add(\.refusedConnections)
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .handshake(let handshake):
            sender = handshake.from
            handshakeDeadline?.cancel()
            handshakeDeadline = nil
            sink.logger.debug("peer connected", metadata: ["peer": "\(handshake.from)"])
        case .batch(let messages):
            // The decoder only yields batches after a handshake, so `sender` is set here.
            guard let sender else { return }
            let accepted = messages.filter { $0.from == sender && $0.to == sink.localMember }
            sink.counters.add(\.droppedMisaddressed, messages.count - accepted.count)
            sink.counters.add(\.receivedFrames)
            sink.counters.add(\.receivedMessages, accepted.count)
            if !accepted.isEmpty { sink.receive(accepted) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        if !failed {
            failed = true
            sink.counters.add(\.refusedConnections)
            sink.logger.warning(
                "closing peer connection",
                metadata: [
                    "peer": "\(sender.map(\.description) ?? "unknown")",
                    "remote": "\(context.remoteAddress?.description ?? "?")",
                    "error": "\(error)",
                ]
            )
        }
        context.close(promise: nil)
    }
}
