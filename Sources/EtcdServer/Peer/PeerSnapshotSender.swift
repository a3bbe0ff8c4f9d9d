import Crypto
import EtcdPeer
import EtcdRaft
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A backend image made to be sent, and what it holds when the maker can tell.
struct PeerSnapshotImage: Sendable, Hashable {
    var path: String
    /// The image's own index, term and configuration (etcd's merged snapshot message), sent in
    /// place of the MsgSnap's when it is not older; nil sends the MsgSnap as Raft made it.
    var metadata: SnapshotMetadata?

    init(path: String, metadata: SnapshotMetadata? = nil) {
        self.path = path
        self.metadata = metadata
    }

    /// `message` describing this image: never older than what Raft offered, since the receiver
    /// installs the image only if it holds at least the snapshot's index.
    func describing(_ message: Message) -> Message {
        guard let metadata, var snapshot = message.snapshot, metadata.index >= snapshot.metadata.index else { return message }
        snapshot.metadata = metadata
        var described = message
        described.snapshot = snapshot
        return described
    }
}

/// Sends one snapshot to one peer on a connection of its own (etcd's rafthttp `snapshotSender`):
/// the MsgSnap, then the image file in chunks of at most ``PeerSnapshotStream/maxChunkBytes``,
/// then its SHA-256, and waits for the receiver's answer. Each chunk is read from the file only
/// once the previous one was taken by the socket (within the write timeout), so the sender holds
/// one chunk at a time whatever the image's size.
struct PeerSnapshotSender: Sendable {
    let peer: NodeID
    let host: String
    let port: Int
    /// The peer's URL is `https://`.
    var secure = false
    let context: PeerWriterContext

    /// Sends `message` with the image that `image` writes; the image file is removed afterwards,
    /// whatever happened. Returns the image's size once the receiver has accepted it.
    func send(_ message: Message, image: @escaping @Sendable () throws -> PeerSnapshotImage) async throws(PeerSnapshotError) -> UInt64 {
        let pool = NIOThreadPool.singleton
        // Making the image (a VACUUM INTO of the whole backend) blocks for a while: on the
        // thread pool, not on the caller's or a Swift concurrency thread.
        let made = try await runOnPool(pool) { () throws(PeerSnapshotError) in
            do {
                return try image()
            } catch {
                throw .image("\(error)")
            }
        }
        let path = made.path
        defer { unlink(path) }
        let message = made.describing(message)
        let file = try await runOnPool(pool) { () throws(PeerSnapshotError) in try SnapshotFile.openForReading(path) }
        defer { close(file.descriptor) }
        let limit = context.configuration.maxSnapshotBytes
        guard file.bytes <= limit else { throw .tooLarge(bytes: file.bytes, limit: limit) }
        var header = ByteBuffer()
        header.writeInteger(file.bytes, endianness: .little)
        do {
            header.writeBytes(try context.codec.encode([message]))
        } catch {
            throw .badHeader("\(error)")
        }
        let channel = try await connect()
        let ack = channel.eventLoop.makePromise(of: UInt8.self)
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(PeerSnapshotAckHandler(ack: ack))
            }.get()
        } catch {
            channel.close(promise: nil)
            ack.fail(error)
            throw .connection("\(error)")
        }
        defer { channel.close(promise: nil) }
        let outcome = await withTaskCancellationHandler {
            () async -> Result<UInt64, PeerSnapshotError> in
            do throws(PeerSnapshotError) {
                return .success(try await finish(file, header: header, on: channel, ack: ack, pool: pool))
            } catch {
                return .failure(error)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        return try outcome.get()
    }

    /// Streams the header and the image, then waits for the receiver's answer.
    private func finish(
        _ file: (descriptor: Int32, bytes: UInt64), header: ByteBuffer, on channel: any Channel,
        ack: EventLoopPromise<UInt8>, pool: NIOThreadPool
    ) async throws(PeerSnapshotError) -> UInt64 {
        try await stream(file, header: header, on: channel, pool: pool)
        // The receiver syncs the file before it answers; a receiver that never answers is
        // given up on after the acknowledgement timeout.
        let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(context.configuration.snapshotAckTimeout)) {
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        let answer: UInt8
        do {
            answer = try await ack.futureResult.get()
        } catch {
            throw .connection("no answer from the receiver: \(error)")
        }
        guard answer == PeerSnapshotStream.accepted else { throw .connection("the receiver refused the snapshot") }
        return file.bytes
    }

    private func stream(
        _ file: (descriptor: Int32, bytes: UInt64), header: ByteBuffer, on channel: any Channel, pool: NIOThreadPool
    ) async throws(PeerSnapshotError) {
        var handshake = PeerHandshake(from: context.localMember, to: peer, clusterID: context.configuration.clusterID)
        handshake.kind = .snapshot
        var opening = ByteBuffer(bytes: handshake.encoded)
        opening.writeImmutableBuffer(header)
        try await write(opening, on: channel)
        let chunkBytes = max(1, min(context.configuration.snapshotChunkBytes, PeerSnapshotStream.maxChunkBytes))
        var hasher = SHA256()
        var sent: UInt64 = 0
        while sent < file.bytes {
            if Task.isCancelled { throw .connection("cancelled") }
            let wanted = Int(min(UInt64(chunkBytes), file.bytes - sent))
            let descriptor = file.descriptor
            let bytes = try await runOnPool(pool) { () throws(PeerSnapshotError) in
                try SnapshotFile.readChunk(descriptor, count: wanted)
            }
            // The image is a file of our own that nothing else writes; if it shrank anyway, the
            // announced size would be a lie, which the receiver refuses: stop here instead.
            guard !bytes.isEmpty else { throw .sizeMismatch(announced: file.bytes, received: sent) }
            hasher.update(data: bytes)
            var chunk = ByteBuffer()
            chunk.reserveCapacity(4 + bytes.count)
            chunk.writeInteger(UInt32(bytes.count), endianness: .little)
            chunk.writeBytes(bytes)
            try await write(chunk, on: channel)
            sent += UInt64(bytes.count)
        }
        var end = ByteBuffer()
        end.writeInteger(UInt32(0), endianness: .little)
        end.writeBytes(Array(hasher.finalize()))
        try await write(end, on: channel)
    }

    private func connect() async throws(PeerSnapshotError) -> any Channel {
        let configuration = context.configuration
        do {
            return try await configuration.dial(host: host, port: port, secure: secure)
        } catch {
            throw .connection("cannot connect to \(host):\(port): \(error)")
        }
    }

    /// Writes and flushes `buffer`, closing the connection if the socket does not take it within
    /// the write timeout (a receiver that stopped reading).
    private func write(_ buffer: ByteBuffer, on channel: any Channel) async throws(PeerSnapshotError) {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(context.configuration.writeTimeout)) {
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        channel.writeAndFlush(buffer, promise: promise)
        do {
            try await promise.futureResult.get()
        } catch {
            throw .connection("write: \(error)")
        }
    }

    private func runOnPool<Value: Sendable>(
        _ pool: NIOThreadPool, _ work: @escaping @Sendable () throws(PeerSnapshotError) -> Value
    ) async throws(PeerSnapshotError) -> Value {
        let result: Result<Value, PeerSnapshotError>
        do {
            result = try await pool.runIfActive { () -> Result<Value, PeerSnapshotError> in
                do throws(PeerSnapshotError) {
                    return .success(try work())
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            throw .file("thread pool: \(error)")
        }
        return try result.get()
    }
}

/// Takes the receiver's one-byte answer; a connection that closes first fails it.
private final class PeerSnapshotAckHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let ack: EventLoopPromise<UInt8>
    private var answered = false

    init(ack: EventLoopPromise<UInt8>) {
        self.ack = ack
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !context.channel.isActive { answer(nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        answer(buffer.readInteger(as: UInt8.self))
    }

    func channelInactive(context: ChannelHandlerContext) {
        answer(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func answer(_ byte: UInt8?) {
        guard !answered else { return }
        answered = true
        if let byte {
            ack.succeed(byte)
        } else {
            ack.fail(ChannelError.eof)
        }
    }
}
