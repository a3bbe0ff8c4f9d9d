import EtcdPeer
import EtcdRaft
import EtcdTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What every writer of a transport shares.
struct PeerWriterContext: Sendable {
    let localMember: NodeID
    let codec: PeerMessageCodec
    let configuration: PeerTransportConfiguration
    let counters: PeerTransportCounters
    let logger: Logger
    let reportUnreachable: @Sendable (NodeID) -> Void
}

/// The sending half for one peer: its outbox and the task that keeps one outbound connection to
/// it and writes each drain of the outbox as one frame (etcd's stream writer in rafthttp, with
/// the stream's messages batched the way its writer flushes them).
///
/// The connection only carries our messages to the peer; the peer answers on its own connection
/// to us. While there is no connection the outbox keeps filling up to its bound, the peer is
/// reported unreachable, and connecting is retried with exponential backoff.
final class PeerWriter: Sendable {
    let peer: NodeID
    let host: String
    let port: Int
    /// The peer's URL is `https://`: connections to it start with a TLS handshake.
    let secure: Bool
    let outbox: PeerOutbox
    private let context: PeerWriterContext

    private struct Link {
        var channel: (any Channel)?
        var task: Task<Void, Never>?
        var stopped = false
        var lastUnreachableReport: ContinuousClock.Instant?
        /// Since when the current connection has been up (etcd's `ActiveSince`); nil without one.
        var connectedSince: ContinuousClock.Instant?
    }

    private let link = Mutex(Link())

    init(peer: NodeID, host: String, port: Int, secure: Bool = false, context: PeerWriterContext) {
        self.peer = peer
        self.host = host
        self.port = port
        self.secure = secure
        self.context = context
        outbox = PeerOutbox(
            messageLimit: context.configuration.outboxMessageLimit, byteLimit: context.configuration.outboxByteLimit)
    }

    func start() {
        let task = Task { await self.run() }
        link.withLock { $0.task = task }
    }

    /// Stops the writer: what waits is discarded, the connection is closed, and this returns once
    /// the writer's task has ended (within the connect timeout at worst).
    func stop() async {
        let (channel, task) = link.withLock { link in
            link.stopped = true
            return (link.channel, link.task)
        }
        outbox.close()
        task?.cancel()
        channel?.close(promise: nil)
        await task?.value
    }

    /// Reports the peer unreachable; `force` skips the rate limit (the first drop of a burst).
    func reportUnreachable(force: Bool) {
        let now = ContinuousClock.now
        let due = link.withLock { link in
            if !force, let last = link.lastUnreachableReport,
                now < last + context.configuration.unreachableReportInterval
            {
                return false
            }
            link.lastUnreachableReport = now
            return true
        }
        guard due else { return }
        context.counters.add(\.unreachableReports)
        context.reportUnreachable(peer)
    }

    /// Since when this writer's connection to the peer has been up, or nil if it is down.
    var connectedSince: ContinuousClock.Instant? { link.withLock { $0.connectedSince } }

    private var isStopped: Bool { link.withLock { $0.stopped } }

    private func run() async {
        let configuration = context.configuration
        var backoff = configuration.initialBackoff
        var attempts = 0
        while !isStopped, !Task.isCancelled {
            if attempts > 0 { context.counters.add(\.reconnects) }
            attempts += 1
            let channel: any Channel
            do {
                channel = try await connect()
            } catch {
                context.logger.debug(
                    "cannot reach peer",
                    metadata: ["peer": "\(peer)", "address": "\(host):\(port)", "error": "\(error)"])
                reportUnreachable(force: false)
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.maximumBackoff)
                continue
            }
            backoff = configuration.initialBackoff
            context.counters.add(\.connections)
            // The pump runs on its connection's event loop: a message the Raft loop queues
            // resumes it there directly and its writes complete there, with no hop through the
            // cooperative pool (a one-client round trip through a follower crosses the peer
            // transport four times).
            await withTaskExecutorPreference(SingleEventLoopTaskExecutor(channel.eventLoop)) {
                await pump(channel)
            }
            channel.close(promise: nil)
            link.withLock {
                $0.channel = nil
                $0.connectedSince = nil
            }
            if !isStopped {
                context.logger.debug("lost connection to peer", metadata: ["peer": "\(peer)"])
                reportUnreachable(force: false)
            }
        }
    }

    /// A connection to the peer with the handshake written, registered so that `stop` closes it.
    private func connect() async throws -> any Channel {
        let configuration = context.configuration
        let channel = try await configuration.dial(host: host, port: port, secure: secure)
        let registered = link.withLock { link in
            guard !link.stopped else { return false }
            link.channel = channel
            link.connectedSince = .now
            return true
        }
        guard registered else {
            channel.close(promise: nil)
            throw CancellationError()
        }
        // However the connection ends (the peer closes it, a write fails), the writer waiting
        // for messages wakes up to notice and reconnect.
        let outbox = self.outbox
        channel.closeFuture.whenComplete { _ in outbox.wake() }
        let handshake = PeerHandshake(from: context.localMember, to: peer, clusterID: configuration.clusterID)
        do {
            try await write(handshake.encoded, on: channel)
        } catch {
            channel.close(promise: nil)
            link.withLock {
                $0.channel = nil
                $0.connectedSince = nil
            }
            throw error
        }
        return channel
    }

    /// Writes every drain of the outbox until the connection breaks or the writer stops.
    private func pump(_ channel: any Channel) async {
        let codec = context.codec
        // The body's version byte and message count come before the messages.
        let maxBodyBytes = codec.maxFrameBytes - 5
        while channel.isActive {
            guard let batch = await outbox.take(maxMessages: codec.maxMessagesPerFrame, maxBodyBytes: maxBodyBytes)
            else { return }
            guard !batch.isEmpty else { continue }
            let (bytes, frames, encoded) = encode(batch)
            guard encoded > 0 else { continue }
            do {
                try await write(bytes, on: channel)
                context.counters.add(\.sentFrames, frames)
                context.counters.add(\.sentMessages, encoded)
                context.counters.addSentBytes(bytes.count, to: peer)
            } catch {
                // Raft retransmits what a broken connection lost.
                context.counters.add(\.droppedUnsent, encoded)
                return
            }
        }
    }

    /// One frame for `batch`, or, if the batch breaks a codec limit (a message with too many
    /// entries, say), the frames of the messages that fit on their own; the rest are dropped.
    private func encode(_ batch: [Message]) -> (bytes: [UInt8], frames: Int, messages: Int) {
        let codec = context.codec
        if let frame = try? codec.encode(batch) { return (frame, 1, batch.count) }
        var bytes: [UInt8] = []
        var encoded = 0
        for message in batch {
            if let frame = try? codec.encode([message]) {
                bytes.append(contentsOf: frame)
                encoded += 1
            } else {
                context.counters.add(\.droppedUnsent)
                context.logger.warning(
                    "dropping a message the peer codec cannot encode",
                    metadata: ["peer": "\(peer)", "type": "\(message.type)", "entries": "\(message.entries.count)"])
            }
        }
        return (bytes, encoded, encoded)
    }

    /// Writes and flushes `bytes`, closing the connection if they are not taken within the write
    /// timeout (etcd's `ConnWriteTimeout`): a peer that stopped reading must not hold the writer.
    private func write(_ bytes: [UInt8], on channel: any Channel) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(context.configuration.writeTimeout)) {
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        channel.writeAndFlush(ByteBuffer(bytes: bytes), promise: promise)
        try await promise.futureResult.get()
    }
}
