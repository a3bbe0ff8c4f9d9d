import Crypto
import EtcdRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The peers with a snapshot in flight, on one side of the transport: at most one per peer each
/// way (a leader sends a follower one snapshot at a time, as etcd's Raft does).
final class PeerSnapshotSlots: Sendable {
    private let peers = Mutex<Set<NodeID>>([])

    func claim(_ peer: NodeID) -> Bool { peers.withLock { $0.insert(peer).inserted } }
    func release(_ peer: NodeID) { _ = peers.withLock { $0.remove(peer) } }
    var count: Int { peers.withLock { $0.count } }
}

/// What every snapshot receiver of a transport shares.
struct PeerSnapshotSink: Sendable {
    let directory: String
    let syncs: Bool
    let idleTimeout: Duration
    let slots: PeerSnapshotSlots
    let counters: PeerTransportCounters
    let logger: Logger
    let threadPool: NIOThreadPool
    let deliver: @Sendable (Message, String) -> Void
}

/// The file of one transfer as the thread pool left it: its descriptor once created, or why the
/// file work failed (later steps are then skipped).
private struct FileState: Sendable {
    var descriptor: Int32?
    var failure: PeerSnapshotError?
}

/// Stores the snapshot of one inbound snapshot connection: the image goes to
/// `<directory>/<term>-<index>.snap.db.tmp` chunk by chunk (written on the thread pool, one write
/// at a time, with reading paused while one is pending), and once the whole image has arrived
/// and matches its SHA-256 the file is synced and renamed to `...snap.db`. Only then is the
/// MsgSnap delivered, with the file's path, and the sender told it was accepted. Anything else
/// (a digest or size mismatch, a stream that stops or stalls for the idle timeout, a second
/// snapshot from the same peer) removes the file and refuses the snapshot.
///
/// Memory: the bytes that have arrived but are not yet written stay under
/// ``PeerSnapshotStream/maxBufferedBytes`` (checked on every chunk; the connection is refused if
/// they would not), whatever the file's size.
final class PeerSnapshotReceiver: ChannelInboundHandler {
    typealias InboundIn = PeerInbound

    private let sink: PeerSnapshotSink

    private struct Transfer {
        var message: Message
        var temporary: String
        var final: String
        var hasher = SHA256()
        var received: UInt64 = 0
    }

    private var transfer: Transfer?
    private var claimed: NodeID?
    private var fileTail: EventLoopFuture<FileState>?
    private var pendingBytes = 0
    private var paused = false
    /// Verified and committing: the outcome no longer depends on the connection.
    private var committing = false
    private var finished = false
    private var idleTimer: Scheduled<Void>?

    init(sink: PeerSnapshotSink) {
        self.sink = sink
    }

    func handlerAdded(context: ChannelHandlerContext) {
        resetIdleTimer(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished, !committing else { return }
        let inbound = unwrapInboundIn(data)
        if case .handshake(let handshake) = inbound, handshake.kind != .snapshot {
            // A message stream or a cluster query: no snapshot comes on it, so no deadline
            // either (a peer may have nothing to say on its stream for minutes).
            finished = true
            idleTimer?.cancel()
            idleTimer = nil
            return
        }
        resetIdleTimer(context)
        switch inbound {
        case .handshake, .batch, .clusterQuery, .hashKVQuery:
            return
        case .snapshotHeader(let message, _):
            begin(message, context: context)
        case .snapshotChunk(let chunk):
            store(chunk, context: context)
        case .snapshotEnd(let digest):
            end(digest, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if transfer == nil {
            // Closed before a header (refused by the decoder, or a bare handshake): nothing began.
            finished = true
        } else if !finished, !committing {
            refuse(.connection("closed before the snapshot's end"), channel: context.channel)
        }
        context.fireChannelInactive()
    }

    // MARK: Steps

    private func begin(_ message: Message, context: ChannelHandlerContext) {
        guard let metadata = message.snapshot?.metadata else { return }
        guard sink.slots.claim(message.from) else {
            refuse(.alreadyInFlight, channel: context.channel)
            return
        }
        claimed = message.from
        let base = sink.directory.hasSuffix("/") ? String(sink.directory.dropLast()) : sink.directory
        let final = base + "/" + PeerSnapshotStream.fileName(term: metadata.term, index: metadata.index)
        let temporary = final + ".tmp"
        transfer = Transfer(message: message, temporary: temporary, final: final)
        fileTail = onPool(context.eventLoop, after: nil) { state throws(PeerSnapshotError) in
            FileState(descriptor: try SnapshotFile.create(temporary))
        }
    }

    private func store(_ chunk: ByteBuffer, context: ChannelHandlerContext) {
        guard var transfer, let tail = fileTail else { return }
        let count = chunk.readableBytes
        chunk.withUnsafeReadableBytes { transfer.hasher.update(bufferPointer: $0) }
        transfer.received += UInt64(count)
        self.transfer = transfer
        pendingBytes += count
        sink.counters.raise(\.snapshotPeakBufferedBytes, to: pendingBytes)
        // The bound on what this member holds for a snapshot: reading pauses below, so only a
        // misbehaving read loop could pass it, and then the snapshot is refused, never buffered.
        guard pendingBytes <= PeerSnapshotStream.maxBufferedBytes else {
            refuse(.connection("more than \(PeerSnapshotStream.maxBufferedBytes) bytes waiting for the disk"), channel: context.channel)
            return
        }
        let channel = context.channel
        if !paused, pendingBytes >= PeerSnapshotStream.maxChunkBytes {
            paused = true
            channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        let written = onPool(context.eventLoop, after: tail) { state throws(PeerSnapshotError) in
            guard let descriptor = state.descriptor else { return state }
            try chunk.withUnsafeReadableBytes { bytes throws(PeerSnapshotError) in try SnapshotFile.writeAll(descriptor, bytes) }
            return state
        }
        fileTail = written
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.whenSuccess { state in
            let receiver = bound.value
            receiver.pendingBytes -= count
            if let failure = state.failure {
                receiver.refuse(failure, channel: channel)
            } else if receiver.paused, receiver.pendingBytes < PeerSnapshotStream.maxChunkBytes {
                receiver.paused = false
                channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in channel.read() }
            }
        }
    }

    private func end(_ digest: [UInt8], context: ChannelHandlerContext) {
        guard let transfer, let tail = fileTail else { return }
        let channel = context.channel
        guard Array(transfer.hasher.finalize()) == digest else {
            refuse(.digestMismatch, channel: channel)
            return
        }
        committing = true
        idleTimer?.cancel()
        idleTimer = nil
        let syncs = sink.syncs
        let committed = onPool(context.eventLoop, after: tail) { state throws(PeerSnapshotError) in
            guard let descriptor = state.descriptor else { return state }
            try SnapshotFile.commit(descriptor, temporary: transfer.temporary, final: transfer.final, syncs: syncs)
            return FileState(descriptor: nil)
        }
        fileTail = committed
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        committed.whenSuccess { state in
            let receiver = bound.value
            receiver.committing = false
            if let failure = state.failure {
                receiver.refuse(failure, channel: channel)
                return
            }
            receiver.finished = true
            receiver.sink.counters.add(\.receivedSnapshots)
            receiver.sink.logger.info(
                "received snapshot image",
                metadata: [
                    "peer": "\(transfer.message.from)", "bytes": "\(transfer.received)",
                    "snapshot_index": "\(transfer.message.snapshot?.metadata.index ?? 0)",
                ])
            // The file is complete and durable: now Raft may see the MsgSnap (etcd's
            // snapshotHandler saves the snap.DB before it hands the message to Raft).
            receiver.sink.deliver(transfer.message, transfer.final)
            receiver.releaseSlot()
            channel.writeAndFlush(ByteBuffer(bytes: [PeerSnapshotStream.accepted])).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    /// Refuses the snapshot: the partial file is removed (after any write still running), the
    /// sender is told if the connection still stands, and the slot is freed once the file is gone.
    private func refuse(_ error: PeerSnapshotError, channel: any Channel) {
        guard !finished else { return }
        finished = true
        idleTimer?.cancel()
        idleTimer = nil
        sink.counters.add(\.refusedSnapshots)
        sink.logger.warning(
            "refused snapshot", metadata: ["peer": "\(claimed.map(\.description) ?? "unknown")", "error": "\(error)"])
        if let transfer, let tail = fileTail {
            let temporary = transfer.temporary
            let discarded = onPool(channel.eventLoop, after: tail, evenAfterFailure: true) { state throws(PeerSnapshotError) in
                SnapshotFile.discard(state.descriptor, temporary)
                return FileState(descriptor: nil)
            }
            fileTail = discarded
            let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            discarded.whenComplete { _ in bound.value.releaseSlot() }
        } else {
            releaseSlot()
        }
        channel.writeAndFlush(ByteBuffer(bytes: [PeerSnapshotStream.refused])).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func releaseSlot() {
        if let claimed { sink.slots.release(claimed) }
        claimed = nil
    }

    private func resetIdleTimer(_ context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        idleTimer = context.eventLoop.scheduleTask(in: TimeAmount(sink.idleTimeout)) {
            bound.value.refuse(.connection("no snapshot bytes within \(bound.value.sink.idleTimeout)"), channel: channel)
        }
    }

    /// Runs `work` on the thread pool after `previous` (file steps of one transfer never overlap)
    /// and completes on `eventLoop`; a failure is carried in the state, never as a failed future,
    /// and skips the steps after it unless `evenAfterFailure` (the clean-up).
    private func onPool(
        _ eventLoop: any EventLoop, after previous: EventLoopFuture<FileState>?, evenAfterFailure: Bool = false,
        _ work: @escaping @Sendable (FileState) throws(PeerSnapshotError) -> FileState
    ) -> EventLoopFuture<FileState> {
        let pool = sink.threadPool
        let start = previous ?? eventLoop.makeSucceededFuture(FileState())
        return start.flatMap { state in
            guard state.failure == nil || evenAfterFailure else { return eventLoop.makeSucceededFuture(state) }
            return pool.runIfActive(eventLoop: eventLoop) { () -> FileState in
                do throws(PeerSnapshotError) {
                    return try work(state)
                } catch {
                    return FileState(descriptor: state.descriptor, failure: error)
                }
            }.recover { error in
                FileState(descriptor: state.descriptor, failure: .file("thread pool: \(error)"))
            }
        }
    }
}
