import Crypto
import EtcdPeer
import EtcdRaft
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import EtcdServer

/// Snapshots on their own connections (127.0.0.1, port 0): a large image arrives whole before its
/// MsgSnap, corrupt, truncated and lying streams leave nothing behind, the sender learns the
/// outcome, one snapshot per peer at a time, and the receiver's memory stays bounded.
@Suite("Peer transport: snapshots", .serialized)
struct PeerSnapshotTests {
    @Test("a 20 MB image arrives intact and its MsgSnap is delivered only once the file is complete")
    func largeImage() async throws {
        let directory = try SnapshotNode.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let a = SnapshotNode(1, snapshotDirectory: nil)
        let b = SnapshotNode(2, snapshotDirectory: directory + "/b")
        try await SnapshotNode.connect(a, b)
        let content = SnapshotNode.pseudoRandomBytes(count: 20 << 20, seed: 7)
        let source = directory + "/image.db"
        try Data(content).write(to: URL(fileURLWithPath: source))

        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 1_000, term: 5)) { source }
        try await waitUntil { !a.reports.isEmpty }
        #expect(a.reports == [SnapshotReport(peer: NodeID(2), status: .finished)])
        let delivery = try #require(b.deliveries.first)
        #expect(b.deliveries.count == 1)
        #expect(delivery.message.type == .snapshot)
        #expect(delivery.message.snapshot?.metadata.index == 1_000)
        #expect(delivery.path == directory + "/b/0000000000000005-00000000000003e8.snap.db")
        // At delivery the file was already whole (the callback measured it).
        #expect(delivery.sizeAtDelivery == UInt64(content.count))
        let received = try Data(contentsOf: URL(fileURLWithPath: delivery.path))
        #expect(SHA256.hash(data: received) == SHA256.hash(data: Data(content)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/b") == ["0000000000000005-00000000000003e8.snap.db"])
        #expect(!FileManager.default.fileExists(atPath: source), "the sender removes its image")
        #expect(b.inbox.count == 0, "a MsgSnap only reaches receiveSnapshot")
        let statistics = b.transport.statistics
        #expect(statistics.receivedSnapshots == 1)
        #expect(statistics.snapshotPeakBufferedBytes > 0)
        #expect(statistics.snapshotPeakBufferedBytes <= PeerSnapshotStream.maxBufferedBytes)
        #expect(a.transport.statistics.sentSnapshots == 1)
        // Message streams still work beside it.
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<3))
        try await waitUntil { b.inbox.count == 3 }
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("a message stream that stays quiet past the snapshot idle timeout is left open (the deadline is for snapshots)")
    func quietMessageStream() async throws {
        let directory = try SnapshotNode.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var quick = PeerNode.fastConfiguration()
        quick.snapshotIdleTimeout = .milliseconds(300)
        let a = SnapshotNode(1, snapshotDirectory: nil)
        let b = SnapshotNode(2, snapshotDirectory: directory + "/b", configuration: quick)
        try await SnapshotNode.connect(a, b)
        // Until the stream stands: on a loaded machine a connection whose handshake takes longer
        // than the (tiny) deadline is refused, and messages sent on it are lost, as Raft allows.
        var index = 0
        let deadline = ContinuousClock.now + .seconds(90)
        while b.inbox.count == 0 && ContinuousClock.now < deadline {
            a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: index..<index + 1))
            index += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(b.inbox.count > 0, "no message arrived within 90 s")
        let before = (received: b.inbox.count, refusals: b.refusals, statistics: a.transport.statistics)
        // Quiet for several idle timeouts: a follower may have nothing to tell another for minutes.
        try await Task.sleep(for: .milliseconds(1_500))
        a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: index..<index + 1))
        try await waitUntil { b.inbox.count == before.received + 1 }
        #expect(b.refusals == before.refusals)
        #expect(a.transport.statistics.connections == before.statistics.connections, "the stream was closed and opened again")
        #expect(a.transport.statistics.reconnects == before.statistics.reconnects)
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("a corrupted chunk, a truncated stream, a lying size or an oversized image is refused and leaves no file")
    func hostileStreams() async throws {
        let directory = try SnapshotNode.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = PeerNode.fastConfiguration()
        configuration.maxSnapshotBytes = 8 << 20
        let b = SnapshotNode(2, snapshotDirectory: directory + "/b", configuration: configuration)
        let port = try await b.transport.start(listeningOn: "127.0.0.1", port: 0)
        let image = SnapshotNode.pseudoRandomBytes(count: 3 << 20, seed: 3)
        let digest = Array(SHA256.hash(data: Data(image)))
        let header = try SnapshotNode.rawHeader(from: 9, to: 2, imageBytes: UInt64(image.count))
        var corrupted = image
        corrupted[1_500_000] ^= 0x01

        let cases: [(String, [UInt8], Bool)] = [
            ("a flipped bit", header + SnapshotNode.rawChunks(corrupted) + SnapshotNode.rawEnd(digest), true),
            ("a stream cut in the middle", header + Array(SnapshotNode.rawChunks(image).prefix(2_000_000)), false),
            ("an end before the announced size", header + SnapshotNode.rawChunks(Array(image.prefix(1 << 20))) + SnapshotNode.rawEnd(digest), true),
            ("a chunk past the announced size", try SnapshotNode.rawHeader(from: 9, to: 2, imageBytes: 100) + SnapshotNode.rawChunks(Array(image.prefix(200))), true),
            ("a chunk over the chunk bound", header + [0x01, 0x00, 0x20, 0x00], true),
            ("an image over the limit", try SnapshotNode.rawHeader(from: 9, to: 2, imageBytes: 9 << 20), true),
            ("a MsgSnap that names another sender", try SnapshotNode.rawHeader(from: 9, to: 2, imageBytes: 10, messageFrom: 1), true),
        ]
        for (name, bytes, waitsForClose) in cases {
            let refusedBefore = b.refusals
            let channel = try await RawPeer.connect(port: port)
            // The receiver may refuse (and close) before it has read everything.
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
            if waitsForClose {
                try await RawPeer.awaitClosed(channel, name)
            } else {
                try? await channel.close()
            }
            // The partial file goes after any write still running, then the peer's slot is freed.
            try await waitUntil {
                b.refusals > refusedBefore && b.transport.snapshotsInFlight.receiving == 0
                    && ((try? FileManager.default.contentsOfDirectory(atPath: directory + "/b")) ?? []).isEmpty
            }
        }
        #expect(b.deliveries.isEmpty)
        #expect(b.inbox.count == 0)

        // A well-formed stream from the same raw peer is then accepted.
        let good = try await RawPeer.connect(port: port)
        let answer = AnswerRecorder()
        try await good.pipeline.addHandler(answer).get()
        try await good.writeAndFlush(ByteBuffer(bytes: header + SnapshotNode.rawChunks(image) + SnapshotNode.rawEnd(digest)))
        try await waitUntil { b.deliveries.count == 1 && answer.bytes == [PeerSnapshotStream.accepted] }
        try? await good.close()  // the receiver closes after its answer
        await b.transport.shutdown()
    }

    @Test("the sender reports failure: snapshots refused by the peer, an image over the limit, an unknown peer, a peer that is down")
    func senderFailures() async throws {
        let directory = try SnapshotNode.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = PeerNode.fastConfiguration()
        configuration.maxSnapshotBytes = 1 << 20
        let a = SnapshotNode(1, snapshotDirectory: nil, configuration: configuration)
        let b = SnapshotNode(2, snapshotDirectory: nil)
        try await SnapshotNode.connect(a, b)

        let small = directory + "/small.db"
        try Data(SnapshotNode.pseudoRandomBytes(count: 4_096, seed: 1)).write(to: URL(fileURLWithPath: small))
        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 10, term: 2)) { small }
        try await waitUntil { a.reports.count == 1 }
        #expect(!FileManager.default.fileExists(atPath: small))

        let large = directory + "/large.db"
        try Data(SnapshotNode.pseudoRandomBytes(count: 2 << 20, seed: 2)).write(to: URL(fileURLWithPath: large))
        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 11, term: 2)) { large }
        try await waitUntil { a.reports.count == 2 }
        #expect(!FileManager.default.fileExists(atPath: large))

        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 7, index: 12, term: 2)) { small }
        a.transport.addPeer(NodeID(3), host: "127.0.0.1", port: try await PeerNode.freePort())
        let unsent = directory + "/unsent.db"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: unsent))
        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 3, index: 13, term: 2)) { unsent }
        try await waitUntil { a.reports.count == 4 }
        #expect(a.reports.map(\.status) == [.failed, .failed, .failed, .failed])
        #expect(a.reports.map(\.peer) == [NodeID(2), NodeID(2), NodeID(7), NodeID(3)])
        #expect(a.transport.statistics.failedSnapshots == 4)
        #expect(!FileManager.default.fileExists(atPath: unsent))
        #expect(b.transport.statistics.refusedConnections == 1, "B refuses the snapshot handshake")
        await a.transport.shutdown()
        await b.transport.shutdown()
    }

    @Test("one snapshot per peer at a time: a second one while the first is in flight is refused at once without making its image")
    func oneAtATime() async throws {
        let directory = try SnapshotNode.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let a = SnapshotNode(1, snapshotDirectory: nil)
        let b = SnapshotNode(2, snapshotDirectory: directory + "/b")
        try await SnapshotNode.connect(a, b)
        let release = Atomic<Bool>(false)
        let secondImageMade = Atomic<Bool>(false)
        let first = directory + "/first.db"
        try Data(SnapshotNode.pseudoRandomBytes(count: 1 << 20, seed: 4)).write(to: URL(fileURLWithPath: first))

        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 20, term: 3)) {
            // The first image takes a while to make: the second snapshot arrives meanwhile.
            let deadline = ContinuousClock.now + .seconds(10)
            while !release.load(ordering: .acquiring), ContinuousClock.now < deadline { usleep(1_000) }
            return first
        }
        #expect(a.transport.snapshotsInFlight.sending == 1)
        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 21, term: 3)) {
            secondImageMade.store(true, ordering: .releasing)
            return first
        }
        #expect(a.reports == [SnapshotReport(peer: NodeID(2), status: .failed)])
        release.store(true, ordering: .releasing)
        try await waitUntil { a.reports.count == 2 }
        #expect(a.reports.last == SnapshotReport(peer: NodeID(2), status: .finished))
        let madeSecondImage = secondImageMade.load(ordering: .acquiring)
        #expect(!madeSecondImage)
        #expect(b.deliveries.map { $0.message.snapshot?.metadata.index } == [20])

        // Once the first is reported, the next one goes.
        let third = directory + "/third.db"
        try Data([9, 9, 9]).write(to: URL(fileURLWithPath: third))
        a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 22, term: 3)) { third }
        try await waitUntil { a.reports.count == 3 }
        #expect(a.reports.last?.status == .finished)
        #expect(a.transport.snapshotsInFlight.sending == 0)
        await a.transport.shutdown()
        await b.transport.shutdown()
    }
}

// MARK: Harness

struct SnapshotReport: Hashable, Sendable {
    var peer: NodeID
    var status: SnapshotStatus
}

struct SnapshotDelivery: Sendable {
    var message: Message
    var path: String
    var sizeAtDelivery: UInt64?
}

/// A transport that takes snapshots into `snapshotDirectory` and records what it was given.
final class SnapshotNode: Sendable {
    let id: NodeID
    let transport: PeerTransport
    let inbox = PeerInboxRecorder()
    private let received = Recorded<SnapshotDelivery>()
    private let reported = Recorded<SnapshotReport>()
    private let boundPort = Mutex<Int?>(nil)

    init(_ id: UInt64, snapshotDirectory: String?, configuration: PeerTransportConfiguration = SnapshotNode.patientConfiguration()) {
        self.id = NodeID(id)
        var configuration = configuration
        configuration.snapshotDirectory = snapshotDirectory
        if let snapshotDirectory {
            try? FileManager.default.createDirectory(atPath: snapshotDirectory, withIntermediateDirectories: true)
        }
        var logger = Logger(label: "etcd.peer.snapshot.test.\(id)")
        logger.logLevel = .critical
        let inbox = self.inbox
        let received = self.received
        let reported = self.reported
        transport = PeerTransport(
            memberID: NodeID(id), codec: PeerMessageCodec(), configuration: configuration, logger: logger,
            receive: { inbox.append($0) }, reportUnreachable: { _ in },
            receiveSnapshot: { message, path in
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value
                received.append(SnapshotDelivery(message: message, path: path, sizeAtDelivery: size))
            },
            reportSnapshot: { peer, status in reported.append(SnapshotReport(peer: peer, status: status)) })
    }

    /// Quick reconnects, but deadlines a loaded machine meets: one snapshot send is one attempt
    /// (Raft asks again after a failure), so a connect or write timeout under the full suite's
    /// load would fail a test about something else.
    static func patientConfiguration() -> PeerTransportConfiguration {
        var configuration = PeerNode.fastConfiguration()
        configuration.connectTimeout = .seconds(10)
        configuration.writeTimeout = .seconds(30)
        configuration.handshakeTimeout = .seconds(30)
        return configuration
    }

    var deliveries: [SnapshotDelivery] { received.values }
    /// Snapshots refused, whether by the stream's decoder (the connection) or its receiver.
    var refusals: Int { transport.statistics.refusedSnapshots + transport.statistics.refusedConnections }
    var reports: [SnapshotReport] { reported.values }

    static func connect(_ a: SnapshotNode, _ b: SnapshotNode) async throws {
        for node in [a, b] {
            let port = try await node.transport.start(listeningOn: "127.0.0.1", port: 0)
            node.boundPort.withLock { $0 = port }
        }
        a.transport.addPeer(b.id, host: "127.0.0.1", port: try #require(b.boundPort.withLock { $0 }))
        b.transport.addPeer(a.id, host: "127.0.0.1", port: try #require(a.boundPort.withLock { $0 }))
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "swift-etcd-peer-snap-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func msgSnap(from: UInt64, to: UInt64, index: UInt64, term: UInt64) -> Message {
        Message(
            type: .snapshot, to: NodeID(to), from: NodeID(from), term: term,
            snapshot: Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(voters: [NodeID(1), NodeID(2)]))))
    }

    static func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        var bytes = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            var word = generator.next()
            for _ in 0..<8 where index < count {
                bytes[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        return bytes
    }

    /// A snapshot handshake and header as a hand-made peer would send them.
    static func rawHeader(from: UInt64, to: UInt64, imageBytes: UInt64, messageFrom: UInt64? = nil) throws -> [UInt8] {
        var handshake = PeerHandshake(from: NodeID(from), to: NodeID(to), clusterID: 0)
        handshake.kind = .snapshot
        var bytes = handshake.encoded
        withUnsafeBytes(of: imageBytes.littleEndian) { bytes += $0 }
        bytes += try PeerMessageCodec().encode([msgSnap(from: messageFrom ?? from, to: to, index: 50, term: 4)])
        return bytes
    }

    static func rawChunks(_ image: [UInt8], chunkBytes: Int = 1 << 20) -> [UInt8] {
        var bytes: [UInt8] = []
        var offset = 0
        while offset < image.count {
            let count = min(chunkBytes, image.count - offset)
            withUnsafeBytes(of: UInt32(count).littleEndian) { bytes += $0 }
            bytes += image[offset..<offset + count]
            offset += count
        }
        return bytes
    }

    static func rawEnd(_ digest: [UInt8]) -> [UInt8] {
        [0, 0, 0, 0] + digest
    }
}

/// Values recorded from a callback.
final class Recorded<Value: Sendable>: Sendable {
    private let recorded = Mutex<[Value]>([])

    func append(_ value: Value) { recorded.withLock { $0.append(value) } }
    var values: [Value] { recorded.withLock { $0 } }
}

/// Records the bytes a raw peer receives.
final class AnswerRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let received = Mutex<[UInt8]>([])

    var bytes: [UInt8] { received.withLock { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        received.withLock { $0 += Array(buffer.readableBytesView) }
    }
}
