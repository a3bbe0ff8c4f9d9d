import EtcdPeer
import EtcdRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import EtcdServer

/// The peer transport on real sockets (127.0.0.1, port 0): delivery and order, batching, bounded
/// outboxes for a peer that is down or never reads, hostile input to the listener, removal and
/// shutdown.
@Suite("Peer transport", .serialized)
struct PeerTransportTests {
    @Test("two transports exchange batches both ways, in order, with nothing lost")
    func exchange() async throws {
        let a = PeerNode(1)
        let b = PeerNode(2)
        try await PeerNode.connect(a, b)
        for round in 0..<3 {
            a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: round * 100..<(round + 1) * 100))
            b.transport.send(PeerNode.appends(from: 2, to: 1, indexes: round * 100..<(round + 1) * 100))
        }
        // The sender counts a frame once its write completes, which may be after it arrived.
        try await waitUntil {
            a.inbox.count == 300 && b.inbox.count == 300 && a.transport.statistics.sentMessages == 300
        }
        #expect(b.inbox.messages.map(\.index) == (0..<300).map(UInt64.init))
        #expect(a.inbox.messages.map(\.index) == (0..<300).map(UInt64.init))
        #expect(b.inbox.messages.allSatisfy { $0.from == NodeID(1) && $0.to == NodeID(2) })
        #expect(a.inbox.messages.allSatisfy { $0.from == NodeID(2) && $0.to == NodeID(1) })
        #expect(a.transport.statistics.sentMessages == 300)
        #expect(b.transport.statistics.receivedMessages == 300)
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("1,000 messages sent in one go arrive in far fewer frames")
    func batching() async throws {
        let a = PeerNode(1)
        let b = PeerNode(2)
        try await PeerNode.connect(a, b)
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<1_000, dataBytes: 16))
        // The sender counts a frame once its write completes, which may be after it arrived.
        try await waitUntil { b.inbox.count == 1_000 && a.transport.statistics.sentMessages == 1_000 }
        let sent = a.transport.statistics
        let received = b.transport.statistics
        #expect(sent.sentMessages == 1_000)
        #expect(sent.sentFrames <= 10)
        #expect(received.receivedFrames == sent.sentFrames)
        #expect(b.inbox.messages.map(\.index) == (0..<1_000).map(UInt64.init))
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("a peer that is down: sends past the bound are dropped, it is reported unreachable, and once up it gets what is new")
    func peerDown() async throws {
        // A port that was just free: the peer will listen there later.
        let placeholder = PeerNode(2)
        let port = try await placeholder.transport.start(listeningOn: "127.0.0.1", port: 0)
        await placeholder.transport.shutdown()

        var configuration = PeerNode.fastConfiguration()
        configuration.outboxMessageLimit = 64
        let a = PeerNode(1, configuration: configuration)
        a.transport.addPeer(NodeID(2), host: "127.0.0.1", port: port)
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<200))
        let depth = try #require(a.transport.outboxDepth(NodeID(2)))
        #expect(depth.messages <= 64)
        #expect(a.transport.statistics.droppedOutboxFull == 200 - depth.messages)
        try await waitUntil { a.unreachable.contains(NodeID(2)) }
        // Several connection attempts fail (with backoff) while the peer is down.
        try await waitUntil { a.transport.statistics.reconnects >= 2 }
        #expect((a.transport.outboxDepth(NodeID(2))?.messages ?? .max) <= 64)

        let b = PeerNode(2)
        _ = try await b.transport.start(listeningOn: "127.0.0.1", port: port)
        try await waitUntil { a.transport.statistics.connections >= 1 }
        // The kept messages go first; until they have left the outbox it is still full, and
        // new ones would be dropped (the connection being up does not mean it was drained).
        try await waitUntil { b.inbox.count >= depth.messages }
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 1_000..<1_010))
        do {
            try await waitUntil { b.inbox.messages.contains { $0.index == 1_009 } }
        } catch {
            throw TestFailure(
                "\(error); a: \(a.transport.statistics), outbox \(String(describing: a.transport.outboxDepth(NodeID(2)))); "
                    + "b: \(b.transport.statistics), \(b.inbox.count) received, inbound \(b.transport.inboundConnectionCount)")
        }
        // What was kept (the first 64, within the bound) and what is new, in order.
        let indexes = b.inbox.messages.map(\.index)
        #expect(indexes == Array(0..<UInt64(depth.messages)) + Array(1_000..<1_010))
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("a peer that accepts and never reads: the outbox stays bounded, send never blocks, unreachable is reported")
    func peerNeverReads() async throws {
        let sink = try await SilentServer.start()
        var configuration = PeerNode.fastConfiguration()
        configuration.outboxMessageLimit = 64
        configuration.outboxByteLimit = 4 << 20
        configuration.writeTimeout = .milliseconds(500)
        let a = PeerNode(1, configuration: configuration)
        a.transport.addPeer(NodeID(2), host: "127.0.0.1", port: sink.port)
        let payload = [UInt8](repeating: 0x5a, count: 64 << 10)
        var slowestSend = Duration.zero
        var index = 0
        let deadline = ContinuousClock.now + .seconds(15)
        // Offer 1 MiB at a time until the outbox overflows: the kernel's socket buffers and the
        // frame in flight fill first.
        while a.transport.statistics.droppedOutboxFull == 0 {
            try #require(ContinuousClock.now < deadline, "the outbox never filled")
            let batch = (0..<16).map { offset in
                Message(
                    type: .append, to: NodeID(2), from: NodeID(1), index: UInt64(index + offset),
                    entries: [Entry(term: 1, index: UInt64(index + offset), data: payload)])
            }
            index += batch.count
            let started = ContinuousClock.now
            a.transport.send(batch)
            slowestSend = max(slowestSend, ContinuousClock.now - started)
            let depth = try #require(a.transport.outboxDepth(NodeID(2)))
            #expect(depth.messages <= 64)
            #expect(depth.bytes <= 4 << 20)
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(slowestSend < .milliseconds(100))
        try await waitUntil { a.unreachable.contains(NodeID(2)) }
        // The stuck write times out and the writer makes a new connection.
        try await waitUntil { a.transport.statistics.connections >= 2 }
        let started = ContinuousClock.now
        await a.transport.shutdown()
        #expect(ContinuousClock.now - started < .seconds(3))
        await sink.stop()
    }

    @Test("hostile input to the listener closes that connection or drops the messages; a well-behaved peer is still served")
    func hostileInput() async throws {
        var configuration = PeerNode.fastConfiguration()
        configuration.handshakeTimeout = .milliseconds(200)
        let a = PeerNode(1)
        let b = PeerNode(2, configuration: configuration)
        try await PeerNode.connect(a, b)
        let port = try #require(b.port)
        let codec = PeerMessageCodec()
        let good = PeerHandshake(from: NodeID(9), to: NodeID(2), clusterID: 0).encoded

        var garbage = SplitMix64(seed: 17)
        let closingInputs: [(String, [UInt8])] = [
            ("no handshake within the timeout", []),
            ("half a handshake", Array(good.prefix(10))),
            ("garbage", (0..<64).map { _ in UInt8(truncatingIfNeeded: garbage.next()) }),
            ("oversized length prefix", good + [0xff, 0xff, 0xff, 0xff]),
            ("wrong magic", [0, 0, 0, 0] + good.dropFirst(4)),
            ("wrong version", Array(good.prefix(4)) + [99] + good.dropFirst(5)),
            ("wrong recipient", PeerHandshake(from: NodeID(9), to: NodeID(7), clusterID: 0).encoded),
            ("another cluster", PeerHandshake(from: NodeID(9), to: NodeID(2), clusterID: 42).encoded),
            ("sender claims to be the receiver", PeerHandshake(from: NodeID(2), to: NodeID(2), clusterID: 0).encoded),
            ("malformed frame", good + [6, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0]),
            ("local message type", good + (try codec.encode([Message(type: .append)])).enumerated().map { $0 == 9 ? 0 : $1 }),
        ]
        for (name, bytes) in closingInputs {
            let channel = try await RawPeer.connect(port: port)
            // On a loaded machine the handshake deadline may close the connection before this
            // write: what counts is that it is closed.
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
            try await RawPeer.awaitClosed(channel, name)
        }
        #expect(b.transport.statistics.refusedConnections == closingInputs.count)

        // A member speaking for another: its spoofed messages are dropped, its own delivered.
        let spoofer = try await RawPeer.connect(port: port)
        let spoofed = Message(type: .heartbeat, to: NodeID(2), from: NodeID(1), term: 99)
        let misaddressed = Message(type: .heartbeat, to: NodeID(5), from: NodeID(9), term: 99)
        let honest = Message(type: .heartbeat, to: NodeID(2), from: NodeID(9), term: 7)
        try await spoofer.writeAndFlush(ByteBuffer(bytes: good + (try codec.encode([spoofed, misaddressed, honest]))))
        try await waitUntil { b.inbox.messages.contains { $0.from == NodeID(9) } }
        #expect(b.inbox.messages == [honest])
        #expect(b.transport.statistics.droppedMisaddressed == 2)
        try await spoofer.close()

        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<10))
        try await waitUntil { b.inbox.count == 11 }
        #expect(b.inbox.messages.filter { $0.from == NodeID(1) }.map(\.index) == (0..<10).map(UInt64.init))
        #expect(b.inbox.messages.allSatisfy { $0.term != 99 })
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("a transport listening on two addresses accepts a peer on each")
    func severalListeners() async throws {
        let b = PeerNode(2)
        let ports = try await b.transport.start(listeningOn: [
            PeerListenAddress(host: "127.0.0.1", port: 0), PeerListenAddress(host: "127.0.0.1", port: 0),
        ])
        try #require(ports.count == 2)
        #expect(ports[0] != ports[1])
        let a = PeerNode(1)
        let c = PeerNode(3)
        a.transport.addPeer(b.id, host: "127.0.0.1", port: ports[0])
        c.transport.addPeer(b.id, host: "127.0.0.1", port: ports[1])
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<5))
        c.transport.send(PeerNode.appends(from: 3, to: 2, indexes: 100..<105))
        try await waitUntil { b.inbox.count == 10 }
        #expect(b.inbox.messages.filter { $0.from == NodeID(1) }.map(\.index) == Array(0..<5))
        #expect(b.inbox.messages.filter { $0.from == NodeID(3) }.map(\.index) == Array(100..<105))
        #expect(b.transport.inboundConnectionCount == 2)
        for node in [a, b, c] { await node.transport.shutdown() }
    }

    @Test("an address that cannot be bound fails the start, names that address, and keeps no listener")
    func unbindableListener() async throws {
        let occupant = PeerNode(9)
        let taken = try await occupant.transport.start(listeningOn: "127.0.0.1", port: 0)
        let free = try await PeerNode.freePort()
        let b = PeerNode(2)
        let error = await #expect(throws: PeerTransportError.self) {
            try await b.transport.start(listeningOn: [
                PeerListenAddress(host: "127.0.0.1", port: free), PeerListenAddress(host: "127.0.0.1", port: taken),
            ])
        }
        guard case .bindFailed(let host, let port, _) = error else {
            Issue.record("expected bindFailed, got \(String(describing: error))")
            return
        }
        #expect(host == "127.0.0.1" && port == taken)
        // The address that was bound first is released again.
        await #expect(throws: (any Error).self) { try await RawPeer.connect(port: free) }
        await b.transport.shutdown()
        await occupant.transport.shutdown()
    }

    @Test("removePeer stops sending to it; shutdown closes everything and returns promptly")
    func removeAndShutdown() async throws {
        let a = PeerNode(1)
        let b = PeerNode(2)
        try await PeerNode.connect(a, b)
        // A peer that is never up keeps a writer in backoff, which shutdown must not wait out.
        a.transport.addPeer(NodeID(3), host: "127.0.0.1", port: try await PeerNode.freePort())
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<5))
        try await waitUntil { b.inbox.count == 5 && b.transport.inboundConnectionCount == 1 }

        await a.transport.removePeer(NodeID(2))
        #expect(a.transport.outboxDepth(NodeID(2)) == nil)
        try await waitUntil { b.transport.inboundConnectionCount == 0 }
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 5..<10))
        #expect(a.transport.statistics.droppedUnknownPeer == 5)
        #expect(b.inbox.count == 5)

        // B keeps its connection to A open; A's shutdown closes it from A's side.
        try await waitUntil { a.transport.inboundConnectionCount == 1 }
        let started = ContinuousClock.now
        await a.transport.shutdown()
        await b.transport.shutdown()
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(a.transport.inboundConnectionCount == 0)
        #expect(b.transport.inboundConnectionCount == 0)
        let aPort = try #require(a.port)
        await #expect(throws: (any Error).self) { try await RawPeer.connect(port: aPort) }
        a.transport.send(PeerNode.appends(from: 1, to: 3, indexes: 0..<1))
        #expect(a.transport.statistics.droppedUnknownPeer == 6)
    }
}

// MARK: Harness

/// One transport, what it received and whom it reported unreachable.
final class PeerNode: Sendable {
    let id: NodeID
    let transport: PeerTransport
    let inbox = PeerInboxRecorder()
    private let reported = PeerReportRecorder()
    private let boundPort = Mutex<Int?>(nil)

    init(_ id: UInt64, configuration: PeerTransportConfiguration = PeerNode.fastConfiguration()) {
        self.id = NodeID(id)
        var logger = Logger(label: "etcd.peer.test.\(id)")
        logger.logLevel = .error
        let inbox = self.inbox
        let reported = self.reported
        transport = PeerTransport(
            memberID: NodeID(id), codec: PeerMessageCodec(), configuration: configuration, logger: logger,
            receive: { inbox.append($0) }, reportUnreachable: { reported.append($0) })
    }

    var unreachable: [NodeID] { reported.peers }
    var port: Int? { boundPort.withLock { $0 } }

    /// Short backoff so that the tests reconnect quickly.
    static func fastConfiguration() -> PeerTransportConfiguration {
        var configuration = PeerTransportConfiguration()
        configuration.initialBackoff = .milliseconds(10)
        configuration.maximumBackoff = .milliseconds(200)
        configuration.connectTimeout = .milliseconds(500)
        return configuration
    }

    /// Starts both listeners and makes each a peer of the other.
    static func connect(_ a: PeerNode, _ b: PeerNode) async throws {
        for node in [a, b] {
            let port = try await node.transport.start(listeningOn: "127.0.0.1", port: 0)
            node.boundPort.withLock { $0 = port }
        }
        a.transport.addPeer(b.id, host: "127.0.0.1", port: try #require(b.port))
        b.transport.addPeer(a.id, host: "127.0.0.1", port: try #require(a.port))
    }

    /// A port nothing listens on (bound, then released).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        return port
    }

    static func appends(from: UInt64, to: UInt64, indexes: Range<Int>, dataBytes: Int = 0) -> [Message] {
        indexes.map { index in
            Message(
                type: .append, to: NodeID(to), from: NodeID(from), term: 1, index: UInt64(index),
                entries: dataBytes == 0 ? [] : [Entry(term: 1, index: UInt64(index), data: .init(repeating: 1, count: dataBytes))])
        }
    }
}

final class PeerInboxRecorder: Sendable {
    private let received = Mutex<[Message]>([])

    func append(_ messages: [Message]) { received.withLock { $0.append(contentsOf: messages) } }
    var messages: [Message] { received.withLock { $0 } }
    var count: Int { received.withLock { $0.count } }
}

final class PeerReportRecorder: Sendable {
    private let reported = Mutex<[NodeID]>([])

    func append(_ peer: NodeID) { reported.withLock { $0.append(peer) } }
    var peers: [NodeID] { reported.withLock { $0 } }
}

/// Raw TCP clients for the hostile-input tests.
enum RawPeer {
    static func connect(port: Int) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Waits (at most 5 s) for the listener to close `channel`.
    static func awaitClosed(_ channel: any Channel, _ what: String) async throws {
        let closed = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await channel.closeFuture.get()
                return true
            }
            group.addTask {
                try await Task.sleep(for: .seconds(5))
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
        if !closed { try? await channel.close() }
        #expect(closed, "the listener kept the connection open after \(what)")
    }
}

/// A TCP server that accepts connections and never reads from them.
struct SilentServer {
    let port: Int
    private let server: any Channel
    private let accepted: AcceptedChannels

    final class AcceptedChannels: Sendable {
        let channels = Mutex<[any Channel]>([])
    }

    static func start() async throws -> SilentServer {
        let accepted = AcceptedChannels()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                accepted.channels.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return SilentServer(port: try #require(server.localAddress?.port), server: server, accepted: accepted)
    }

    func stop() async {
        try? await server.close()
        for channel in accepted.channels.withLock({ $0 }) { try? await channel.close() }
    }
}
