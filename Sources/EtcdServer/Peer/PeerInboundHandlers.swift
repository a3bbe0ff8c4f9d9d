import EtcdPeer
import EtcdRaft
import Logging
import NIOCore

/// What an inbound peer connection yields: its handshake once, then batches of messages or, on a
/// snapshot connection, one snapshot's header, its chunks and its end.
enum PeerInbound: Sendable {
    case handshake(PeerHandshake)
    /// A frame of messages, with its size on the wire (prefix included).
    case batch([Message], frameBytes: Int)
    case snapshotHeader(Message, imageBytes: UInt64)
    case snapshotChunk(ByteBuffer)
    case snapshotEnd(digest: [UInt8])
    /// A member joining the cluster asks for its description (see ``PeerClusterQuery``).
    case clusterQuery
    /// The leader's corruption check asks for the HashKV at a revision (see ``PeerHashKVQuery``).
    case hashKVQuery(revision: Int64)
}

/// Why an inbound connection was closed.
enum PeerInboundError: Error, Sendable, CustomStringConvertible {
    case handshake(PeerHandshakeError)
    case frame(PeerCodecError)
    case snapshot(PeerSnapshotError)

    var description: String {
        switch self {
        case .handshake(let error): error.description
        case .frame(let error): error.description
        case .snapshot(let error): error.description
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
    /// The largest snapshot image accepted, or nil when this member takes no snapshots (a
    /// snapshot handshake is then refused).
    let maxSnapshotBytes: UInt64?
    private var handshakeDone = false
    /// Set after a snapshot handshake: the rest of the connection is one snapshot stream.
    private var snapshot: PeerSnapshotDecoder?
    /// Where a HashKV query's connection stands: its revision comes after the handshake, and
    /// nothing more is read after it.
    private enum HashKVQuery { case awaitingRevision, answered }
    private var hashKVQuery: HashKVQuery?

    init(codec: PeerMessageCodec, localMember: NodeID, clusterID: UInt64, maxSnapshotBytes: UInt64? = nil) {
        self.codec = codec
        self.localMember = localMember
        self.clusterID = clusterID
        self.maxSnapshotBytes = maxSnapshotBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard handshakeDone else {
            guard let bytes = buffer.readBytes(length: PeerHandshake.byteCount) else { return .needMoreData }
            if bytes == PeerClusterQuery.handshake.encoded {
                // The connection is the query and nothing else: the answer closes it.
                handshakeDone = true
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                context.fireChannelRead(wrapInboundOut(.clusterQuery))
                return .needMoreData
            }
            if clusterID != 0, bytes == PeerHashKVQuery.handshake(clusterID: clusterID).encoded {
                handshakeDone = true
                hashKVQuery = .awaitingRevision
                return .continue
            }
            let handshake: PeerHandshake
            do throws(PeerHandshakeError) {
                handshake = try PeerHandshake.decode(bytes, localMember: localMember, clusterID: clusterID)
            } catch {
                throw PeerInboundError.handshake(error)
            }
            if handshake.kind == .snapshot {
                guard let maxSnapshotBytes else { throw PeerInboundError.snapshot(.notAccepted) }
                snapshot = PeerSnapshotDecoder(
                    codec: codec, sender: handshake.from, localMember: localMember, maxImageBytes: maxSnapshotBytes)
            }
            handshakeDone = true
            context.fireChannelRead(wrapInboundOut(.handshake(handshake)))
            return .continue
        }
        if let query = hashKVQuery {
            guard query == .awaitingRevision else {
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                return .needMoreData
            }
            guard let bytes = buffer.readBytes(length: PeerHashKVQuery.revisionBytes) else { return .needMoreData }
            hashKVQuery = .answered
            context.fireChannelRead(wrapInboundOut(.hashKVQuery(revision: PeerHashKVQuery.revision(of: bytes))))
            return .continue
        }
        if snapshot != nil {
            do throws(PeerSnapshotError) {
                guard let event = try snapshot?.decode(&buffer) else { return .needMoreData }
                context.fireChannelRead(wrapInboundOut(event))
                return .continue
            } catch {
                throw PeerInboundError.snapshot(error)
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
            context.fireChannelRead(wrapInboundOut(.batch(messages, frameBytes: prefixBytes + length)))
            return .continue
        } catch {
            throw PeerInboundError.frame(error)
        }
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        // A partial frame at EOF is simply lost with the connection: the sender reconnects (a
        // partial snapshot is discarded by the receiver when the connection closes).
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// The snapshot stream of one connection (see ``PeerSnapshotStream``): header, chunks, end.
/// Nothing is buffered for a part until its announced length has been checked, so a lying or
/// hostile sender costs at most one chunk of memory.
struct PeerSnapshotDecoder {
    let codec: PeerMessageCodec
    let sender: NodeID
    let localMember: NodeID
    let maxImageBytes: UInt64

    private enum Stage {
        case header
        case chunks(remaining: UInt64)
        case digest
        case done
    }

    private var stage = Stage.header
    private var announced: UInt64 = 0

    init(codec: PeerMessageCodec, sender: NodeID, localMember: NodeID, maxImageBytes: UInt64) {
        self.codec = codec
        self.sender = sender
        self.localMember = localMember
        self.maxImageBytes = maxImageBytes
    }

    /// The next event, or nil when `buffer` does not hold a whole part yet.
    mutating func decode(_ buffer: inout ByteBuffer) throws(PeerSnapshotError) -> PeerInbound? {
        switch stage {
        case .header:
            return try decodeHeader(&buffer)
        case .chunks(let remaining):
            guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else {
                return nil
            }
            if length == 0 {
                guard remaining == 0 else { throw .sizeMismatch(announced: announced, received: announced - remaining) }
                buffer.moveReaderIndex(forwardBy: 4)
                stage = .digest
                return try decode(&buffer)
            }
            guard Int(length) <= PeerSnapshotStream.maxChunkBytes else { throw .chunkTooLarge(Int(length)) }
            guard UInt64(length) <= remaining else {
                throw .sizeMismatch(announced: announced, received: announced - remaining + UInt64(length))
            }
            guard buffer.readableBytes >= 4 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            guard let chunk = buffer.readSlice(length: Int(length)) else { return nil }
            stage = .chunks(remaining: remaining - UInt64(length))
            return .snapshotChunk(chunk)
        case .digest:
            guard let digest = buffer.readBytes(length: PeerSnapshotStream.digestBytes) else { return nil }
            stage = .done
            return .snapshotEnd(digest: digest)
        case .done:
            guard buffer.readableBytes == 0 else { throw .trailingBytes }
            return nil
        }
    }

    private mutating func decodeHeader(_ buffer: inout ByteBuffer) throws(PeerSnapshotError) -> PeerInbound? {
        let prefixBytes = PeerMessageCodec.lengthPrefixBytes
        guard let size = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt64.self),
            let frameLength = buffer.getInteger(at: buffer.readerIndex + 8, endianness: .little, as: UInt32.self)
        else { return nil }
        guard size <= maxImageBytes else { throw .tooLarge(bytes: size, limit: maxImageBytes) }
        guard Int(frameLength) <= PeerSnapshotStream.maxHeaderFrameBytes else {
            throw .badHeader("a header frame of \(frameLength) bytes")
        }
        guard buffer.readableBytes >= 8 + prefixBytes + Int(frameLength) else { return nil }
        buffer.moveReaderIndex(forwardBy: 8 + prefixBytes)
        let body = buffer.readBytes(length: Int(frameLength)) ?? []
        let messages: [Message]
        do throws(PeerCodecError) {
            messages = try codec.decode(body: body)
        } catch {
            throw .badHeader(error.description)
        }
        guard messages.count == 1, let message = messages.first, message.type == .snapshot, message.snapshot != nil else {
            throw .badHeader("it is not one MsgSnap")
        }
        guard message.from == sender, message.to == localMember else {
            throw .badHeader("the MsgSnap is from \(message.from) to \(message.to) on \(sender)'s connection")
        }
        announced = size
        stage = .chunks(remaining: size)
        return .snapshotHeader(message, imageBytes: size)
    }
}

/// Where decoded batches go: the transport's member ID, counters, logger and `receive`.
struct PeerInboundSink: Sendable {
    let localMember: NodeID
    let counters: PeerTransportCounters
    let logger: Logger
    let receive: @Sendable ([Message]) -> Void
    let handshakeTimeout: Duration
    /// Answers a joining member's query; nil while there is nothing to tell (the query's
    /// connection is then closed without an answer).
    var describeCluster: @Sendable () -> PeerClusterInfo? = { nil }
    /// Answers a corruption check's HashKV query with its encoded answer; nil closes the
    /// connection without one.
    var answerHashKV: (@Sendable (Int64) async -> [UInt8])?
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
            // The snapshot receiver learns from it whether a snapshot may come on this connection.
            context.fireChannelRead(data)
        case .batch(let messages, let frameBytes):
            // The decoder only yields batches after a handshake, so `sender` is set here.
            guard let sender else { return }
            sink.counters.addReceivedBytes(frameBytes, from: sender)
            let accepted = messages.filter { $0.from == sender && $0.to == sink.localMember }
            sink.counters.add(\.droppedMisaddressed, messages.count - accepted.count)
            sink.counters.add(\.receivedFrames)
            sink.counters.add(\.receivedMessages, accepted.count)
            if !accepted.isEmpty { sink.receive(accepted) }
        case .clusterQuery:
            handshakeDeadline?.cancel()
            handshakeDeadline = nil
            guard let info = sink.describeCluster() else {
                context.close(promise: nil)
                return
            }
            sink.logger.debug("answering a joining member's query", metadata: ["remote": "\(context.remoteAddress?.description ?? "?")"])
            let answer = context.channel.allocator.buffer(bytes: PeerClusterQuery.encodeAnswer(info))
            let channel = context.channel
            channel.writeAndFlush(answer).whenComplete { _ in channel.close(promise: nil) }
        case .hashKVQuery(let revision):
            handshakeDeadline?.cancel()
            handshakeDeadline = nil
            let channel = context.channel
            guard let answerHashKV = sink.answerHashKV else {
                context.close(promise: nil)
                return
            }
            // Hashing takes a while (it yields to applies between pieces): off the event loop.
            Task {
                let answer = await answerHashKV(revision)
                channel.writeAndFlush(ByteBuffer(bytes: answer)).whenComplete { _ in channel.close(promise: nil) }
            }
        case .snapshotHeader, .snapshotChunk, .snapshotEnd:
            // The decoder checked the snapshot's sender and recipient against the handshake; the
            // snapshot receiver after this handler stores it.
            context.fireChannelRead(data)
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
