import EtcdPeer
import EtcdRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Why a ``PeerTransport`` could not start listening.
enum PeerTransportError: Error, Hashable, Sendable, CustomStringConvertible {
    case alreadyStarted
    case shutDown
    case bindFailed(host: String, port: Int, reason: String)

    var description: String {
        switch self {
        case .alreadyStarted: "peer transport is already listening"
        case .shutDown: "peer transport is shut down"
        case .bindFailed(let host, let port, let reason): "cannot listen for peers on \(host):\(port): \(reason)"
        }
    }
}

/// An address the transport listens on for peers.
struct PeerListenAddress: Hashable, Sendable {
    var host: String
    var port: Int
    /// An `https://` peer URL: accepted connections start with a TLS handshake.
    var secure = false
}

/// Carries Raft messages between this member and its peers (issue 17), modelled on etcd's
/// rafthttp: one outbound connection per peer carries our messages to it, a listener takes the
/// connections peers make to us, and each peer has a bounded outbox that the Raft loop fills
/// without ever waiting.
///
/// Outbound: ``send(_:)`` routes each message by `to` into that peer's ``PeerOutbox``; the peer's
/// ``PeerWriter`` writes each drain as one frame (see ``PeerMessageCodec``) after a handshake
/// that names both members and the cluster. A full outbox drops (Raft retransmits) and reports
/// the peer unreachable; so does a peer that cannot be reached, retried with backoff.
///
/// Inbound: frames are decoded on the event loop and each batch goes to `receive` there, so
/// `receive` must be cheap (hand the batch to the Raft loop's mailbox). Peer bytes are untrusted:
/// a bad handshake, an oversized or malformed frame closes the connection, and messages that do
/// not come from the handshake's member (or are not for us) are dropped.
final class PeerTransport: Sendable {
    let memberID: NodeID
    let configuration: PeerTransportConfiguration
    private let codec: PeerMessageCodec
    private let logger: Logger
    private let receive: @Sendable ([Message]) -> Void
    private let unreachable: @Sendable (NodeID) -> Void
    private let receiveSnapshot: (@Sendable (Message, String) -> Void)?
    private let reportSnapshot: @Sendable (NodeID, SnapshotStatus) -> Void
    private let counters = PeerTransportCounters()
    /// Peers sending us a snapshot now (at most one each).
    private let inboundSnapshots = PeerSnapshotSlots()

    /// A snapshot being sent to a peer; `generation` tells a finished task's entry from a newer one.
    private struct OutboundSnapshot {
        var generation: UInt64
        var task: Task<Void, Never>?
    }

    private struct State {
        var servers: [any Channel] = []
        var inbound: [ObjectIdentifier: any Channel] = [:]
        var writers: [NodeID: PeerWriter] = [:]
        var snapshots: [NodeID: OutboundSnapshot] = [:]
        var snapshotGeneration: UInt64 = 0
        var shutDown = false
    }

    private let state = Mutex(State())

    /// A transport for `memberID`. Raft messages received go to `receive`; a peer that cannot be
    /// reached is reported to `reportUnreachable`. Snapshots: a received one is delivered to
    /// `receiveSnapshot` with the path of its stored image (nil, or no
    /// `configuration.snapshotDirectory`, refuses every snapshot), and the outcome of each
    /// ``sendSnapshot(_:image:)`` goes to `reportSnapshot`. All callbacks run on an event loop or
    /// a transport task and must be cheap (hand the value to the Raft loop's mailbox).
    init(
        memberID: NodeID, codec: PeerMessageCodec, configuration: PeerTransportConfiguration, logger: Logger,
        receive: @escaping @Sendable ([Message]) -> Void, reportUnreachable: @escaping @Sendable (NodeID) -> Void,
        receiveSnapshot: (@Sendable (Message, String) -> Void)? = nil,
        reportSnapshot: @escaping @Sendable (NodeID, SnapshotStatus) -> Void = { _, _ in }
    ) {
        self.memberID = memberID
        self.codec = codec
        self.configuration = configuration
        self.logger = logger
        self.receive = receive
        unreachable = reportUnreachable
        self.receiveSnapshot = receiveSnapshot
        self.reportSnapshot = reportSnapshot
    }

    /// What the transport has done so far.
    var statistics: PeerTransportStatistics { counters.snapshot }

    /// Messages and bytes waiting for `peer` (nil if it is not a peer).
    func outboxDepth(_ peer: NodeID) -> (messages: Int, bytes: Int)? {
        state.withLock { $0.writers[peer] }?.outbox.depth
    }

    /// What a joining member's query is answered with (see ``answerClusterQueries(with:)``).
    private let clusterDescription = ClusterDescription()

    private final class ClusterDescription: Sendable {
        let source = Mutex<(@Sendable () -> PeerClusterInfo?)?>(nil)
        func describe() -> PeerClusterInfo? { source.withLock { $0 }?() }
    }

    /// What a corruption check's HashKV query is answered with (see ``answerHashKVQueries(with:)``).
    private let hashKVAnswerer = Mutex<(@Sendable (Int64) async -> [UInt8])?>(nil)

    /// Answers the leader's HashKV queries (its corruption checks) with `answer`'s encoded answer.
    func answerHashKVQueries(with answer: @escaping @Sendable (Int64) async -> [UInt8]) {
        hashKVAnswerer.withLock { $0 = answer }
    }

    /// Answers joining members' queries on the listener with `describe`'s answer.
    func answerClusterQueries(with describe: @escaping @Sendable () -> PeerClusterInfo?) {
        clusterDescription.source.withLock { $0 = describe }
    }

    /// Since when the connection to `peer` has been up (etcd's `ActiveSince`), or nil if it is
    /// down or `peer` is not a peer.
    func activeSince(_ peer: NodeID) -> ContinuousClock.Instant? {
        state.withLock { $0.writers[peer] }?.connectedSince
    }

    /// The members this transport sends to.
    var peers: [NodeID] { state.withLock { Array($0.writers.keys) } }

    /// Inbound connections open now.
    var inboundConnectionCount: Int { state.withLock { $0.inbound.count } }

    // MARK: Listening

    /// Listens for peers on `host`:`port` and returns the bound port (useful with port 0).
    func start(listeningOn host: String, port: Int) async throws(PeerTransportError) -> Int {
        let bound = try await start(listeningOn: [PeerListenAddress(host: host, port: port)])
        return bound[0]
    }

    /// Listens for peers on every address (etcd serves each `--listen-peer-urls` entry) and
    /// returns the bound ports in the same order. Either every address is bound or, when one
    /// cannot be, none is kept and the error names that address: etcd, too, refuses to start
    /// with a peer listener it cannot create.
    func start(listeningOn addresses: [PeerListenAddress]) async throws(PeerTransportError) -> [Int] {
        try state.withLock { (state) throws(PeerTransportError) in
            if state.shutDown { throw .shutDown }
            if !state.servers.isEmpty { throw .alreadyStarted }
        }
        var servers: [any Channel] = []
        for address in addresses {
            do throws(PeerTransportError) {
                servers.append(try await bind(address))
            } catch {
                for server in servers { try? await server.close() }
                throw error
            }
        }
        let kept = state.withLock { state in
            guard !state.shutDown, state.servers.isEmpty else { return false }
            state.servers = servers
            return true
        }
        guard kept else {
            for server in servers { try? await server.close() }
            throw .shutDown
        }
        var ports: [Int] = []
        for (address, server) in zip(addresses, servers) {
            let bound = server.localAddress?.port ?? address.port
            ports.append(bound)
            logger.info("listening for peers", metadata: ["address": "\(address.host):\(bound)", "member": "\(memberID)"])
        }
        return ports
    }

    private func bind(_ address: PeerListenAddress) async throws(PeerTransportError) -> any Channel {
        let tls = address.secure ? configuration.tls : nil
        guard tls != nil || !address.secure else {
            throw .bindFailed(host: address.host, port: address.port, reason: "an https peer URL needs peer TLS")
        }
        do {
            return try await ServerBootstrap(group: configuration.eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { [self] channel in self.initializeInbound(channel, tls: tls) }
                .bind(host: address.host, port: address.port).get()
        } catch {
            throw .bindFailed(host: address.host, port: address.port, reason: "\(error)")
        }
    }

    /// Sets up an accepted connection: TLS in front when `tls` is given, then the frame decoder.
    private func initializeInbound(_ channel: any Channel, tls: TLSContexts?) -> EventLoopFuture<Void> {
        let key = ObjectIdentifier(channel)
        let accepted = state.withLock { state in
            guard !state.shutDown else { return false }
            state.inbound[key] = channel
            return true
        }
        guard accepted else { return channel.close() }
        channel.closeFuture.whenComplete { [self] _ in _ = state.withLock { $0.inbound.removeValue(forKey: key) } }
        var inboundSink = PeerInboundSink(
            localMember: memberID, counters: counters, logger: logger, receive: receive,
            handshakeTimeout: configuration.handshakeTimeout)
        let description = clusterDescription
        inboundSink.describeCluster = { description.describe() }
        inboundSink.answerHashKV = hashKVAnswerer.withLock { $0 }
        let sink = inboundSink
        let snapshotSink = snapshotSink()
        let decoder = PeerFrameDecoder(
            codec: codec, localMember: memberID, clusterID: configuration.clusterID,
            maxSnapshotBytes: snapshotSink == nil ? nil : configuration.maxSnapshotBytes)
        // Never buffer more than one largest frame and its prefix (plus the handshake). A
        // snapshot stream's parts are smaller still (a chunk, the header frame).
        let bufferLimit = PeerHandshake.byteCount + PeerMessageCodec.lengthPrefixBytes + codec.maxFrameBytes
        return channel.eventLoop.makeCompletedFuture {
            try tls?.addServerHandlers(to: channel.pipeline.syncOperations)
            try channel.pipeline.syncOperations.addHandlers(
                ByteToMessageHandler(decoder, maximumBufferSize: bufferLimit),
                PeerReceiveHandler(sink: sink)
            )
            if let snapshotSink {
                try channel.pipeline.syncOperations.addHandler(PeerSnapshotReceiver(sink: snapshotSink))
            }
        }
    }

    /// What snapshot receivers need, or nil when this member takes no snapshots.
    private func snapshotSink() -> PeerSnapshotSink? {
        guard let directory = configuration.snapshotDirectory, let receiveSnapshot else { return nil }
        return PeerSnapshotSink(
            directory: directory, syncs: configuration.syncsSnapshots, idleTimeout: configuration.snapshotIdleTimeout,
            slots: inboundSnapshots, counters: counters, logger: logger, threadPool: NIOThreadPool.singleton,
            deliver: receiveSnapshot)
    }

    // MARK: Peers

    /// Starts sending to `id` at `host`:`port` (over TLS when `secure`). Adding a peer that exists
    /// with another address or scheme replaces its writer (what waited for the old one is dropped).
    func addPeer(_ id: NodeID, host: String, port: Int, secure: Bool = false) {
        let context = PeerWriterContext(
            localMember: memberID, codec: codec, configuration: configuration, counters: counters, logger: logger,
            reportUnreachable: unreachable)
        let writer = PeerWriter(peer: id, host: host, port: port, secure: secure, context: context)
        let (added, replaced) = state.withLock { state -> (Bool, PeerWriter?) in
            guard !state.shutDown, id != memberID else { return (false, nil) }
            if let existing = state.writers[id], existing.host == host, existing.port == port, existing.secure == secure {
                return (false, nil)
            }
            defer { state.writers[id] = writer }
            return (true, state.writers[id])
        }
        guard added else { return }
        writer.start()
        if let replaced { Task { await replaced.stop() } }
    }

    /// Stops sending to `id`: what waits for it is dropped and its connection closed. Returns
    /// once its writer has ended.
    func removePeer(_ id: NodeID) async {
        let (writer, snapshot) = state.withLock { ($0.writers.removeValue(forKey: id), $0.snapshots[id]?.task) }
        snapshot?.cancel()
        await writer?.stop()
        await snapshot?.value
    }

    // MARK: Sending

    /// Queues `messages` for their peers and returns at once; never waits for the network.
    /// Messages for a member that is not a peer, or past a peer's bound, are dropped and counted.
    func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        let writers = state.withLock { $0.writers }
        var byPeer: [NodeID: [(message: Message, bytes: Int)]] = [:]
        var unknown = 0
        for message in messages {
            guard writers[message.to] != nil else {
                unknown += 1
                continue
            }
            byPeer[message.to, default: []].append((message, Self.encodedSize(message)))
        }
        counters.add(\.droppedUnknownPeer, unknown)
        for (peer, batch) in byPeer {
            guard let writer = writers[peer] else { continue }
            let result = writer.outbox.offer(batch)
            counters.add(\.droppedOutboxFull, result.dropped)
            if result.burstStarted {
                logger.warning(
                    "dropped Raft messages: the peer's outbox is full",
                    metadata: ["peer": "\(peer)", "dropped": "\(result.dropped)"])
                // etcd reports the peer unreachable when its buffer is full (peer.go `send`);
                // once per burst here, so that a flood of drops is not a flood of reports.
                writer.reportUnreachable(force: true)
            }
        }
    }

    /// The bytes `message` takes in a frame body, as `PeerMessageCodec` lays it out: the fixed
    /// fields, the context, each entry and the snapshot.
    static func encodedSize(_ message: Message) -> Int {
        var size = 67 + message.context.count
        for entry in message.entries { size += 21 + entry.data.count }
        if let snapshot = message.snapshot {
            let members = snapshot.metadata.confState.voters.count + snapshot.metadata.confState.learners.count
            size += 8 + 8 + 4 + 4 + 8 * members + 4 + snapshot.data.count
        }
        return size
    }

    // MARK: Snapshots

    /// Sends a MsgSnap (`message`, type `.snapshot` with its snapshot's metadata) and the backend
    /// image behind it to `message.to`, on a connection of its own, and returns at once; the
    /// outcome goes to `reportSnapshot` (etcd's rafthttp `snapshotSender` and
    /// `ReportSnapshot`). `image` runs on a transport task, not the caller's, and returns the
    /// path of a fresh image file, which is removed once sent (or not).
    ///
    /// `.finished` is reported once the receiver has stored and synced the image and handed the
    /// MsgSnap to its Raft; `.failed` for everything else: an image that cannot be made or is
    /// larger than `maxSnapshotBytes`, a peer that is unknown, down, refuses or does not answer
    /// within the timeouts. At most one snapshot is in flight per peer: another one for a peer
    /// that has one in flight is refused at once (reported `.failed`, `image` never called);
    /// Raft sends it again after the first one's report.
    func sendSnapshot(_ message: Message, image: @escaping @Sendable () throws -> String) {
        sendSnapshot(message) { () throws -> PeerSnapshotImage in PeerSnapshotImage(path: try image()) }
    }

    /// ``sendSnapshot(_:image:)`` with an image that may describe itself: its metadata, when
    /// given, replaces the message's (see ``PeerSnapshotImage``).
    func sendSnapshot(_ message: Message, image: @escaping @Sendable () throws -> PeerSnapshotImage) {
        let peer = message.to
        guard message.type == .snapshot, message.snapshot != nil else {
            failSnapshot(peer, .notASnapshot)
            return
        }
        let claim = state.withLock { state -> Result<(PeerWriter, UInt64), PeerSnapshotError> in
            guard !state.shutDown, let writer = state.writers[peer] else { return .failure(.unknownPeer) }
            guard state.snapshots[peer] == nil else { return .failure(.alreadyInFlight) }
            state.snapshotGeneration += 1
            state.snapshots[peer] = OutboundSnapshot(generation: state.snapshotGeneration)
            return .success((writer, state.snapshotGeneration))
        }
        let writer: PeerWriter
        let generation: UInt64
        switch claim {
        case .failure(let error):
            failSnapshot(peer, error)
            return
        case .success(let claimed):
            (writer, generation) = claimed
        }
        let sender = PeerSnapshotSender(
            peer: peer, host: writer.host, port: writer.port, secure: writer.secure,
            context: PeerWriterContext(
                localMember: memberID, codec: codec, configuration: configuration, counters: counters, logger: logger,
                reportUnreachable: unreachable))
        let task = Task {
            let outcome: Result<UInt64, PeerSnapshotError>
            do throws(PeerSnapshotError) {
                outcome = .success(try await sender.send(message, image: image))
            } catch {
                outcome = .failure(error)
            }
            // The slot is free before the report, so that Raft may send another at once.
            state.withLock { state in
                if state.snapshots[peer]?.generation == generation { state.snapshots[peer] = nil }
            }
            switch outcome {
            case .success(let bytes):
                counters.add(\.sentSnapshots)
                logger.info(
                    "sent snapshot", metadata: ["peer": "\(peer)", "bytes": "\(bytes)", "index": "\(message.snapshot?.metadata.index ?? 0)"])
                reportSnapshot(peer, .finished)
            case .failure(let error):
                failSnapshot(peer, error)
            }
        }
        state.withLock { state in
            if state.snapshots[peer]?.generation == generation { state.snapshots[peer]?.task = task }
        }
    }

    private func failSnapshot(_ peer: NodeID, _ error: PeerSnapshotError) {
        counters.add(\.failedSnapshots)
        logger.warning("failed to send snapshot", metadata: ["peer": "\(peer)", "error": "\(error)"])
        reportSnapshot(peer, .failed)
    }

    /// Snapshots being sent now, and being received.
    var snapshotsInFlight: (sending: Int, receiving: Int) {
        (state.withLock { $0.snapshots.count }, inboundSnapshots.count)
    }

    // MARK: Shutdown

    /// Stops listening, closes every connection and stops every writer (pending messages are
    /// dropped). Later sends are dropped as for an unknown peer.
    func shutdown() async {
        let (servers, inbound, writers, snapshots) = state.withLock { state in
            state.shutDown = true
            defer {
                state.servers = []
                state.inbound = [:]
                state.writers = [:]
            }
            return (
                state.servers, Array(state.inbound.values), Array(state.writers.values),
                state.snapshots.values.compactMap(\.task)
            )
        }
        for server in servers { try? await server.close() }
        for channel in inbound { channel.close(promise: nil) }
        for snapshot in snapshots { snapshot.cancel() }
        await withTaskGroup(of: Void.self) { group in
            for writer in writers { group.addTask { await writer.stop() } }
            for snapshot in snapshots { group.addTask { await snapshot.value } }
        }
        logger.debug("peer transport shut down", metadata: ["member": "\(memberID)"])
    }
}
