import EtcdPeer
import EtcdRaft
import Foundation
import Testing

/// The peer codec round-trips every message Raft sends, and refuses (never traps on) anything
/// else: truncated, corrupted, oversized or hostile frames.
@Suite("Peer message codec")
struct PeerMessageCodecTests {
    static let sendable = MessageType.allCases.filter { !$0.isLocal }

    private func randomBytes(_ count: Int, _ random: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    private func randomMessage(_ random: inout SplitMix64) -> Message {
        var message = Message(type: Self.sendable.randomElement(using: &random) ?? .append)
        message.to = NodeID(UInt64.random(in: 0...UInt64.max, using: &random))
        message.from = NodeID(UInt64.random(in: 0...5, using: &random))
        message.term = UInt64.random(in: 0...UInt64.max, using: &random)
        message.logTerm = UInt64.random(in: 0...100, using: &random)
        message.index = UInt64.random(in: 0...UInt64.max, using: &random)
        message.commit = UInt64.random(in: 0...1_000, using: &random)
        message.reject = Bool.random(using: &random)
        message.rejectHint = UInt64.random(in: 0...1_000, using: &random)
        message.context = randomBytes(Int.random(in: 0...16, using: &random), &random)
        message.entries = (0..<Int.random(in: 0...5, using: &random)).map { position in
            Entry(
                term: UInt64.random(in: 1...9, using: &random), index: UInt64(position + 1),
                type: Bool.random(using: &random) ? .normal : .confChange,
                data: randomBytes(Int.random(in: 0...64, using: &random), &random))
        }
        if Int.random(in: 0..<4, using: &random) == 0 {
            let voters = (0..<Int.random(in: 0...5, using: &random)).map { _ in NodeID(UInt64.random(in: 1...99, using: &random)) }
            message.snapshot = Snapshot(
                metadata: SnapshotMetadata(
                    index: UInt64.random(in: 0...1_000, using: &random), term: 3,
                    confState: ConfState(voters: voters, learners: [NodeID(100)])),
                data: randomBytes(Int.random(in: 0...128, using: &random), &random))
        }
        return message
    }

    private var seed: UInt64 {
        let seed = ProcessInfo.processInfo.environment["SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        print("PeerMessageCodecTests SEED=\(seed)")
        return seed
    }

    private func body(of frame: [UInt8]) -> [UInt8] { Array(frame.dropFirst(PeerMessageCodec.lengthPrefixBytes)) }

    @Test("random batches of every message type a peer may send round-trip exactly")
    func roundTrip() throws {
        var random = SplitMix64(seed: seed)
        let codec = PeerMessageCodec()
        for _ in 0..<500 {
            let batch = (0..<Int.random(in: 0...8, using: &random)).map { _ in randomMessage(&random) }
            let frame = try codec.encode(batch)
            #expect(try codec.bodyLength(prefix: frame) == frame.count - PeerMessageCodec.lengthPrefixBytes)
            #expect(try codec.decode(body: body(of: frame)) == batch)
        }
    }

    @Test("every truncation of a valid frame, and random corruption, is refused or decoded, never a trap")
    func hostileBytes() throws {
        var random = SplitMix64(seed: seed)
        let codec = PeerMessageCodec(maxFrameBytes: 1 << 16, maxMessagesPerFrame: 64, maxEntriesPerMessage: 64, maxMembers: 16)
        for _ in 0..<50 {
            let batch = (0..<Int.random(in: 1...4, using: &random)).map { _ in randomMessage(&random) }
            let valid = body(of: try codec.encode(batch))
            for length in 0..<valid.count {
                #expect(throws: PeerCodecError.self) { try codec.decode(body: Array(valid.prefix(length))) }
            }
            for _ in 0..<50 {
                var corrupted = valid
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    corrupted[Int.random(in: 0..<corrupted.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
                _ = try? codec.decode(body: corrupted)
            }
            for _ in 0..<20 {
                _ = try? codec.decode(body: randomBytes(Int.random(in: 0...300, using: &random), &random))
            }
        }
    }

    @Test("frames that announce more than they hold or more than the limits are refused before anything is allocated")
    func limits() throws {
        let codec = PeerMessageCodec(maxFrameBytes: 1_000, maxMessagesPerFrame: 10, maxEntriesPerMessage: 10, maxMembers: 4)
        // A length prefix past the limit is refused from its four bytes alone.
        #expect(throws: PeerCodecError.tooLarge(what: "frame", size: 1_001, limit: 1_000)) {
            try codec.bodyLength(prefix: [0xe9, 0x03, 0, 0])
        }
        #expect(try codec.bodyLength(prefix: [0xe8, 0x03, 0]) == nil)
        // Four billion messages announced in a five-byte body.
        #expect(throws: PeerCodecError.tooLarge(what: "message count", size: 0xffff_ffff, limit: 10)) {
            try codec.decode(body: [PeerMessageCodec.version, 0xff, 0xff, 0xff, 0xff])
        }
        #expect(throws: PeerCodecError.truncated(what: "message count")) {
            try codec.decode(body: [PeerMessageCodec.version, 5, 0, 0, 0])
        }
        #expect(throws: PeerCodecError.unsupportedVersion(9)) { try codec.decode(body: [9, 0, 0, 0, 0]) }
        #expect(throws: PeerCodecError.trailingBytes(1)) { try codec.decode(body: [PeerMessageCodec.version, 0, 0, 0, 0, 7]) }
        #expect(throws: PeerCodecError.self) { try codec.encode(Array(repeating: Message(type: .heartbeat), count: 11)) }
        #expect(throws: PeerCodecError.self) {
            try codec.encode([Message(type: .append, entries: Array(repeating: Entry(term: 1, index: 1), count: 11))])
        }
        #expect(throws: PeerCodecError.self) {
            try codec.encode([Message(type: .append, entries: [Entry(term: 1, index: 1, data: Array(repeating: 0, count: 2_000))])])
        }
    }

    @Test("messages a node only makes for itself, unknown types and unknown flags are refused")
    func hostileValues() throws {
        let codec = PeerMessageCodec()
        let valid = body(of: try codec.encode([Message(type: .heartbeat, to: NodeID(2), from: NodeID(1), term: 4)]))
        // Byte 5 is the message type, byte 62 the reject flag, byte 71 the snapshot flag.
        for local in MessageType.allCases.filter(\.isLocal) {
            var frame = valid
            frame[5] = local.rawValue
            #expect(throws: PeerCodecError.self, "\(local) from a peer") { try codec.decode(body: frame) }
        }
        var unknownType = valid
        unknownType[5] = 200
        #expect(throws: PeerCodecError.invalid(what: "message type 200")) { try codec.decode(body: unknownType) }
        var badReject = valid
        badReject[62] = 2
        #expect(throws: PeerCodecError.invalid(what: "reject flag 2")) { try codec.decode(body: badReject) }
        var badSnapshotFlag = valid
        badSnapshotFlag[71] = 3
        #expect(throws: PeerCodecError.invalid(what: "snapshot flag 3")) { try codec.decode(body: badSnapshotFlag) }
    }
}
