import EtcdAPI
import EtcdRaft
import EtcdServer
import EtcdTestSupport
import EtcdTransport
import Foundation
import GRPCCore
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization
import Testing

/// Hostile and malformed input: after each kind, the member still serves, and every write it
/// acknowledged is readable.
@Suite("Bad input")
struct BadInputTests {
    /// Every unary method of KV, Lease, Maintenance and Cluster (those not served answer
    /// UNIMPLEMENTED, which is fine too).
    static let unaryMethods: [(service: String, method: String)] =
        ["Range", "Put", "DeleteRange", "Txn", "Compact"].map { ("etcdserverpb.KV", $0) }
        + ["LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases"].map { ("etcdserverpb.Lease", $0) }
        + ["Alarm", "Status", "Defragment", "Hash", "HashKV", "MoveLeader", "Downgrade"].map {
            ("etcdserverpb.Maintenance", $0)
        }
        + ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"].map {
            ("etcdserverpb.Cluster", $0)
        }

    /// Inputs built to stress a protobuf decoder rather than drawn at random.
    static let extremeMessages: [(name: String, bytes: [UInt8])] = {
        var inputs: [(String, [UInt8])] = [
            ("empty", []),
            ("overlong varint", [0x08] + Array(repeating: 0xff, count: 11)),
            ("length past the end", [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
            ("group start nested 5,000 deep", Array(repeating: 0x0b, count: 5_000)),
            ("wrong wire type on field 1", [0x0d, 1, 2, 3, 4]),
            ("field number 0", [0x00, 0x01]),
            ("field number 2^29-1", [0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]),
            ("256 KiB of unknown fields", Array([0xb8, 0x3e, 0x01].repeated(87_000))),
        ]
        // Fields 1 to 15 as varints at the extremes of int64 (every int64 and enum field of these
        // messages is among them), and as 1 MiB byte strings (every bytes/string field).
        let extremes: [(String, UInt64)] = [
            ("Int64.min", UInt64(bitPattern: Int64.min)), ("-1", UInt64.max), ("Int64.max", UInt64(Int64.max)),
        ]
        for (name, value) in extremes {
            inputs.append(("fields 1-15 = \(name)", everyField { field in varintField(field, value) }))
        }
        inputs.append(("fields 1-15 = 1 MiB each, past the request limit", everyField { bytesField($0, length: 1 << 20) }))
        inputs.append(("fields 1-15 = 64 KiB each", everyField { bytesField($0, length: 1 << 16) }))
        return inputs
    }()

    @Test("random bytes and extreme protobuf as the request of every unary method")
    func randomRequests() async throws {
        let seed = ProcessInfo.processInfo.environment["SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        print("BadInputTests.randomRequests: SEED=\(seed)")
        var random = SplitMix64(seed: seed)
        // The binary, not an in-process server: a crash then fails this test with its seed
        // instead of ending the whole test run.
        try await withEtcd(.swiftEtcd) { server in
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                let ledger = AckedPuts()
                var outcomes: [String: Int] = [:]
                for (service, method) in Self.unaryMethods {
                    var inputs = Self.extremeMessages.map(\.bytes)
                    for _ in 0..<40 {
                        let count = Int.random(in: 0...300, using: &random)
                        inputs.append((0..<count).map { _ in UInt8.random(in: 0...255, using: &random) })
                    }
                    for input in inputs {
                        let outcome = try await Self.call(client, service: service, method: method, bytes: input)
                        outcomes["\(outcome)", default: 0] += 1
                        #expect(server.child?.exitStatus == nil, "\(service)/\(method) with \(input.prefix(32)) stopped the server (SEED=\(seed))")
                    }
                    try await ledger.checkAlive(client.kv, after: "\(method) (SEED=\(seed))")
                }
                print("outcomes: \(outcomes.sorted { $0.key < $1.key })")
                try await ledger.checkAllReadable(client.kv)
            }
        }
    }

    /// A Txn nested `depth` levels deep (each level is two messages deep; the lean server decodes
    /// up to 256, so that 33 to 127 levels get the validator's answer).
    static func nestedTxn(depth: Int) -> [UInt8] {
        var txn = Etcdserverpb_TxnRequest.with {
            $0.success = [.with { $0.requestPut = .with { $0.key = Data("deep"); $0.value = Data("v") } }]
        }
        for _ in 1..<depth {
            var outer = Etcdserverpb_TxnRequest()
            outer.success = [Etcdserverpb_RequestOp.with { $0.requestTxn = txn }]
            txn = outer
        }
        return (try? txn.serializedBytes() as [UInt8]) ?? []
    }

    @Test("Txns nested up to 32 levels are applied; deeper ones are refused before the log; the member serves on")
    func deepTxn() async throws {
        try await withEtcd(.swiftEtcd) { server in
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                let expected = [
                    2: "ok", 10: "ok", 32: "ok", 33: "invalidArgument", 49: "invalidArgument", 50: "invalidArgument",
                    127: "invalidArgument", 200: "internalError",
                ]
                for (depth, answer) in expected.sorted(by: { $0.key < $1.key }) {
                    let outcome = try await Self.call(client, service: "etcdserverpb.KV", method: "Txn", bytes: Self.nestedTxn(depth: depth))
                    #expect(outcome == answer, "a Txn nested \(depth) deep")
                    #expect(server.child?.exitStatus == nil, "a Txn nested \(depth) deep stopped the server")
                    try await AckedPuts().checkAlive(client.kv, after: "a Txn nested \(depth) deep")
                }
            }
            // What entered the log is read back at the next start.
            try await server.restart()
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                try await AckedPuts().checkAlive(client.kv, after: "a restart after deep Txns")
            }
        }
    }

    @Test("a Range limit of Int64.max is answered (all keys, no 'more'), alone and inside a writing Txn")
    func maximalLimit() async throws {
        let range = Etcdserverpb_RangeRequest.with { $0.key = Data("a"); $0.rangeEnd = Data("z"); $0.limit = Int64.max }
        let txn = Etcdserverpb_TxnRequest.with {
            $0.success = [
                .with { $0.requestPut = .with { $0.key = Data("b"); $0.value = Data("v") } },
                .with { $0.requestRange = range },
            ]
        }
        try await withEtcd(.swiftEtcd) { server in
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                _ = try await client.kv.put(.with { $0.key = Data("a"); $0.value = Data("v") })
                let plain = try await client.kv.range(range)
                #expect(plain.kvs.count == 1 && !plain.more)
                let inTxn = try await client.kv.txn(txn)
                #expect(inTxn.responses.last?.responseRange.kvs.count == 2)
                #expect(server.child?.exitStatus == nil)
            }
            // The txn was applied after its WAL sync; a trap there would repeat at every start.
            try await server.restart()
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                let count = try await client.kv.range(range).kvs.count
                #expect(count == 2)
            }
        }
    }

    /// Sends `bytes` as the request message of `service/method`; returns the status code.
    static func call(_ client: EtcdGRPCClient, service: String, method: String, bytes: [UInt8]) async throws -> String {
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        do {
            _ = try await client.client.unary(
                request: ClientRequest(message: bytes),
                descriptor: MethodDescriptor(fullyQualifiedService: service, method: method, type: .unary),
                serializer: RawBytes(),
                deserializer: RawBytes(),
                options: options
            ) { response in try response.message }
            return "ok"
        } catch let error as RPCError {
            // A call that timed out means the server stopped answering.
            #expect(error.code != .deadlineExceeded, "\(service)/\(method) did not answer within 10 s")
            return "\(error.code)"
        }
    }

    @Test("keys, values and requests over the limits are refused as etcd does")
    func oversized() async throws {
        try await withServer(configure: { $0.maxRequestBytes = 64 * 1024 }) { port in
            try await withEtcdGRPCClient(port: port) { client in
                let ledger = AckedPuts()
                let over = 64 * 1024 + 1
                let huge = Data(repeating: 0x62, count: over)
                // Over --max-request-bytes, within gRPC's margin: etcd's own refusal.
                for put in [
                    Etcdserverpb_PutRequest.with { $0.key = huge; $0.value = Data("v") },
                    Etcdserverpb_PutRequest.with { $0.key = Data("k"); $0.value = huge },
                ] {
                    let error = await #expect(throws: RPCError.self) { _ = try await client.kv.put(put) }
                    #expect(error?.code == .invalidArgument)
                    #expect(error?.message == "etcdserver: request is too large")
                }
                let txn = Etcdserverpb_TxnRequest.with { txn in
                    txn.success = (0..<100).map { index in
                        Etcdserverpb_RequestOp.with {
                            $0.requestPut = .with { $0.key = Data("t\(index)"); $0.value = Data(repeating: 1, count: 1_000) }
                        }
                    }
                }
                let txnError = await #expect(throws: RPCError.self) { _ = try await client.kv.txn(txn) }
                #expect(txnError?.message == "etcdserver: request is too large")
                // Past gRPC's margin too (512 KiB more): refused before it is decoded.
                let beyond = Etcdserverpb_PutRequest.with { $0.key = Data("k"); $0.value = Data(count: 64 * 1024 + 600 * 1024) }
                let grpcError = await #expect(throws: RPCError.self) { _ = try await client.kv.put(beyond) }
                // As grpc-go (etcd): RESOURCE_EXHAUSTED, from the message's length prefix.
                #expect(grpcError?.code == .resourceExhausted)
                #expect(grpcError?.message.hasPrefix("grpc: received message larger than max (") == true, "\(String(describing: grpcError))")
                try await ledger.checkAlive(client.kv, after: "oversized requests")
                try await ledger.checkAllReadable(client.kv)
            }
        }
    }

    @Test("200 connections opened at once are all served, then closed")
    func manyConnections() async throws {
        try await withServerHandle { server, port in
            let connections = 200
            let opened = try await withThrowingTaskGroup(of: ((any Channel), FrameCollector).self) { group in
                for _ in 0..<connections {
                    group.addTask {
                        let (channel, collector) = try await PingFloodTests.connectRaw(port: port)
                        try await channel.writeAndFlush(PingFloodTests.pings(1, preface: true)).get()
                        return (channel, collector)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let channels = opened.map(\.0)
            let collectors = opened.map(\.1)
            // Every connection gets its PING answered: the server took them all.
            try await waitUntil { collectors.allSatisfy { $0.counts.pingAcks == 1 } }
            #expect(server.connectionCounters.opened.load(ordering: .relaxed) >= connections)
            for channel in channels { try? await channel.close() }
            try await waitUntil {
                server.connectionCounters.closed.load(ordering: .relaxed) >= connections
            }
            try await withEtcdGRPCClient(port: port) { client in
                let ledger = AckedPuts()
                try await ledger.checkAlive(client.kv, after: "200 connections")
            }
        }
    }

    @Test("a watcher that never reads while its key changes fast does not stop the member serving others")
    func watcherNeverReads() async throws {
        try await withServerHandle { server, port in
            try await withEtcdGRPCClient(port: port) { stalled in
                let watch = WatchStreamClient(stalled.watch)
                watch.create(key: "busy")
                try await watch.waitFor("created") { $0.contains { $0.created } }
                watch.setPaused(true)
                try await withEtcdGRPCClient(port: port) { client in
                    let ledger = AckedPuts()
                    // 24 MB of events: far more than every window and buffer between them.
                    let value = Data(repeating: 0x61, count: 600 * 1024)
                    for _ in 0..<40 {
                        _ = try await client.kv.put(Etcdserverpb_PutRequest.with { $0.key = Data("busy"); $0.value = value })
                        try await ledger.checkAlive(client.kv, after: "a put while a watcher does not read")
                    }
                    try await ledger.checkAllReadable(client.kv)
                }
                await watch.close()
                // The server lets go of the stream once the client is gone.
                try await waitUntil { server.watchCounts?.streams == 0 }
            }
        }
    }

    @Test("calls reset right after HEADERS and part of their DATA leave the member serving")
    func resetMidCall() async throws {
        try await withServerHandle { server, port in
            let (channel, collector) = try await PingFloodTests.connectRaw(port: port)
            var bytes = ClientPingResponderTests.preface + ClientPingResponderTests.frame(type: 0x4, payload: [])
            let put = try Etcdserverpb_PutRequest.with { $0.key = Data("reset"); $0.value = Data("v") }.serializedBytes() as [UInt8]
            let message = [0] + [UInt8(0), 0, 0, UInt8(put.count)] + put
            for index in 0..<100 {
                let stream = UInt32(2 * index + 1)
                let path = ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch",
                    "/etcdserverpb.Lease/LeaseKeepAlive"][index % 4]
                bytes += ClientPingResponderTests.frame(type: 0x1, flags: 0x4, stream: stream, payload: Self.grpcHeaders(path: path))
                // Part of a message (index 0 mod 3), a whole one without the end, or none.
                switch index % 3 {
                case 0: bytes += ClientPingResponderTests.frame(type: 0x0, stream: stream, payload: Array(message.prefix(7)))
                case 1: bytes += ClientPingResponderTests.frame(type: 0x0, stream: stream, payload: message)
                default: break
                }
                // RST_STREAM(CANCEL).
                bytes += ClientPingResponderTests.frame(type: 0x3, stream: stream, payload: [0, 0, 0, 8])
            }
            // Then a PING: its ACK says the server read past all of the above.
            bytes += ClientPingResponderTests.ping
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            try await waitUntil { collector.counts.pingAcks == 1 || collector.counts.goaways > 0 }
            #expect(collector.counts.goaways == 0)
            try await channel.close()
            try await withEtcdGRPCClient(port: port) { client in
                let ledger = AckedPuts()
                try await ledger.checkAlive(client.kv, after: "reset calls")
                try await ledger.checkAllReadable(client.kv)
            }
            try await waitUntil { server.watchCounts?.streams == 0 }
        }
    }

    /// A gRPC request's HEADERS block in HPACK, every field a literal without indexing (RFC 7541
    /// §6.2.2) and no Huffman coding.
    static func grpcHeaders(path: String) -> [UInt8] {
        let fields = [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0x00)
            block.append(UInt8(name.utf8.count))
            block += Array(name.utf8)
            block.append(UInt8(value.utf8.count))
            block += Array(value.utf8)
        }
        return block
    }
}

/// The puts a test got acknowledged, to check that each stays readable.
final class AckedPuts: Sendable {
    private let puts = Mutex<[(key: String, value: String)]>([])

    /// A put and then a linearizable get of it succeed.
    func checkAlive(_ kv: Etcdserverpb_KV.Client<EtcdGRPCClient.Transport>, after what: String) async throws {
        let number = puts.withLock { $0.count }
        let key = "alive-\(number)"
        let value = "after \(what)"
        _ = try await kv.put(Etcdserverpb_PutRequest.with { $0.key = Data(key); $0.value = Data(value) })
        puts.withLock { $0.append((key, value)) }
        let read = try await kv.range(Etcdserverpb_RangeRequest.with { $0.key = Data(key) })
        #expect(read.kvs.map(\.value) == [Data(value)], "member not serving after \(what)")
    }

    /// Every acknowledged put reads back.
    func checkAllReadable(_ kv: Etcdserverpb_KV.Client<EtcdGRPCClient.Transport>) async throws {
        for (key, value) in puts.withLock({ $0 }) {
            let read = try await kv.range(Etcdserverpb_RangeRequest.with { $0.key = Data(key) })
            #expect(read.kvs.map(\.value) == [Data(value)], "acknowledged put of \(key) lost")
        }
    }
}


/// Request and response messages as bytes, unparsed.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}


/// Fields 1 to 15, each as `field` encodes it.
func everyField(_ field: (Int) -> [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = []
    for number in 1...15 { bytes += field(number) }
    return bytes
}

/// A varint field (wire type 0).
func varintField(_ number: Int, _ value: UInt64) -> [UInt8] {
    [UInt8(number << 3)] + varint(value)
}

/// A length-delimited field (wire type 2) of `length` bytes 'a'.
func bytesField(_ number: Int, length: Int) -> [UInt8] {
    let tag: [UInt8] = [UInt8(number << 3 | 2)]
    return tag + varint(UInt64(length)) + [UInt8](repeating: 0x61, count: length)
}

/// A protobuf varint.
func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var bytes: [UInt8] = []
    while value >= 0x80 {
        bytes.append(UInt8(value & 0x7f) | 0x80)
        value >>= 7
    }
    return bytes + [UInt8(value)]
}

extension Array {
    func repeated(_ times: Int) -> [Element] { (0..<times).flatMap { _ in self } }
}
