import EtcdAPI
import EtcdServer
import EtcdTestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOHPACK
import Testing

/// The lean gRPC server (the default on the client URLs) beside the grpc-swift one on the same
/// member (`--experimental-grpc-server=grpc-swift` on the client URL, a lean listener from
/// `--experimental-lean-grpc-listen-urls` beside it): the same calls get the same answers and
/// errors, from a grpc-swift client and from etcdctl (grpc-go).
@Suite("Lean gRPC listener")
struct LeanGRPCServerTests {
    private static func withLeanServer(
        _ body: @Sendable (_ grpcSwiftPort: Int, _ leanPort: Int) async throws -> Void
    ) async throws {
        try await withServerHandle(configure: {
            $0.grpcServer = .grpcSwift
            $0.leanGRPCListenURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
            $0.maxRequestBytes = 4096
        }) { server, port in
            let lean = try #require(server.leanGRPCAddresses.first?.port)
            try await body(port, lean)
        }
    }

    @Test("KV, Lease, Cluster and Maintenance calls get the answers and errors the grpc-swift listener gives")
    func sameAnswers() async throws {
        try await Self.withLeanServer { grpcSwiftPort, leanPort in
            try await withKVClient(port: leanPort) { kv, client in
                var put = Etcdserverpb_PutRequest()
                put.key = Data("lean/a".utf8)
                put.value = Data("1".utf8)
                put.prevKv = true
                let first = try await kv.put(put)
                #expect(first.header.revision == 2)
                put.value = Data("2".utf8)
                let second = try await kv.put(put)
                #expect(second.prevKv.value == Data("1".utf8))

                var range = Etcdserverpb_RangeRequest()
                range.key = Data("lean/".utf8)
                range.rangeEnd = Data("lean0".utf8)
                let linearizable = try await kv.range(range)
                #expect(linearizable.kvs.map(\.value) == [Data("2".utf8)])
                #expect(linearizable.header.revision == 3)
                range.serializable = true
                #expect(try await kv.range(range).kvs.count == 1)

                var compare = Etcdserverpb_Compare()
                compare.key = Data("lean/a".utf8)
                compare.target = .version
                compare.result = .equal
                compare.version = 2
                var txn = Etcdserverpb_TxnRequest()
                txn.compare = [compare]
                var delete = Etcdserverpb_RequestOp()
                delete.requestDeleteRange.key = Data("lean/a".utf8)
                txn.success = [delete]
                let outcome = try await kv.txn(txn)
                #expect(outcome.succeeded)
                #expect(outcome.responses.first?.responseDeleteRange.deleted == 1)

                let lease = Etcdserverpb_Lease.Client(wrapping: client)
                var grant = Etcdserverpb_LeaseGrantRequest()
                grant.ttl = 60
                let granted = try await lease.leaseGrant(grant)
                #expect(granted.ttl == 60)
                var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
                timeToLive.id = granted.id
                #expect(try await lease.leaseTimeToLive(timeToLive).grantedTtl == 60)
                #expect(try await lease.leaseLeases(Etcdserverpb_LeaseLeasesRequest()).leases.map(\.id) == [granted.id])
                var revoke = Etcdserverpb_LeaseRevokeRequest()
                revoke.id = granted.id
                _ = try await lease.leaseRevoke(revoke)
                #expect(try await lease.leaseTimeToLive(timeToLive).ttl == -1)

                let members = try await Etcdserverpb_Cluster.Client(wrapping: client).memberList(Etcdserverpb_MemberListRequest())
                #expect(members.members.count == 1)
                let status = try await Etcdserverpb_Maintenance.Client(wrapping: client).status(Etcdserverpb_StatusRequest())
                #expect(status.header.revision == 4)
            }

            // Requests that fail: the same code and message from both listeners.
            var emptyKey = Etcdserverpb_PutRequest()
            emptyKey.value = Data("x".utf8)
            var tooLarge = Etcdserverpb_PutRequest()
            tooLarge.key = Data("big".utf8)
            tooLarge.value = Data(repeating: 1, count: 5000)
            var future = Etcdserverpb_RangeRequest()
            future.key = Data("a".utf8)
            future.revision = 1_000
            var unknownLease = Etcdserverpb_PutRequest()
            unknownLease.key = Data("k".utf8)
            unknownLease.lease = 12345
            let requests = (emptyKey, tooLarge, future, unknownLease)
            for port in [grpcSwiftPort, leanPort] {
                let (emptyKey, tooLarge, future, unknownLease) = requests
                try await withKVClient(port: port) { kv, _ in
                    let errors = [
                        await Self.error { _ = try await kv.put(emptyKey) },
                        await Self.error { _ = try await kv.put(tooLarge) },
                        await Self.error { _ = try await kv.range(future) },
                        await Self.error { _ = try await kv.put(unknownLease) },
                    ]
                    #expect(errors.map { $0?.code } == [.invalidArgument, .invalidArgument, .outOfRange, .notFound], "port \(port)")
                    #expect(errors.map { $0?.message } == [
                        "etcdserver: key is not provided", "etcdserver: request is too large",
                        "etcdserver: mvcc: required revision is a future revision", "etcdserver: requested lease not found",
                    ], "port \(port)")
                }
            }
        }
    }

    @Test("etcdctl (grpc-go) works against it, watch and lease keep-alive included")
    func etcdctl() async throws {
        try await Self.withLeanServer { _, leanPort in
            let etcdctl = Etcdctl(endpoints: "127.0.0.1:\(leanPort)")
            #expect(try await etcdctl.run("put", "foo", "bar").standardOutput == "OK\n")
            #expect(try await etcdctl.run("get", "foo").standardOutput == "foo\nbar\n")
            let txn = try await etcdctl.run(["txn"], standardInput: "value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo nope\n\n")
            #expect(txn.standardOutput == "SUCCESS\n\nOK\n")
            #expect(try await etcdctl.run("get", "foo", "--print-value-only").standardOutput == "baz\n")
            #expect(try await etcdctl.run("del", "foo").standardOutput == "1\n")
            let empty = try await etcdctl.run("put", "", "x")
            #expect(!empty.succeeded)
            #expect(empty.standardError.contains("Error: etcdserver: key is not provided"))
            #expect(try await etcdctl.run("member", "list").succeeded)
            #expect(try await etcdctl.run("endpoint", "status").succeeded)
            // A watch from the start of history replays it, then waits for more until stopped.
            let watch = try await Etcdctl(endpoints: "127.0.0.1:\(leanPort)", timeout: .seconds(3)).run("watch", "foo", "--rev=1")
            #expect(watch.standardOutput.hasPrefix("PUT\nfoo\nbar\nPUT\nfoo\nbaz\nDELETE\nfoo\n\n"), "\(watch)")
            let grant = try await etcdctl.run("lease", "grant", "60")
            let leaseID = try #require(grant.standardOutput.split(separator: " ").dropFirst().first.map(String.init), "\(grant)")
            let keepAlive = try await etcdctl.run("lease", "keep-alive", "--once", leaseID)
            #expect(keepAlive.standardOutput == "lease \(leaseID) keepalived with TTL(60)\n", "\(keepAlive)")
        }
    }

    @Test("--max-concurrent-streams is announced; a client that opens more streams loses its connection, others are served")
    func maxConcurrentStreams() async throws {
        try await withServerHandle(configure: { $0.maxConcurrentStreams = 2 }) { _, port in
            let (channel, collector) = try await PingFloodTests.connectRaw(port: port)
            /// The collector's counts once `condition` holds, or after 10 s.
            func counts(until condition: (FrameCollector.Counts) -> Bool) async throws -> FrameCollector.Counts {
                let deadline = ContinuousClock.now.advanced(by: .seconds(10))
                while !condition(collector.counts), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                return collector.counts
            }
            try await channel.writeAndFlush(
                ByteBuffer(bytes: ClientPingResponderTests.preface + ClientPingResponderTests.frame(type: 0x4, payload: []))).get()
            // A stream limit applies once the client acknowledges the SETTINGS that set it.
            _ = try await counts { !$0.settings.isEmpty }
            var encoder = HPACKEncoder(allocator: channel.allocator)
            var bytes = ClientPingResponderTests.frame(type: 0x4, flags: 0x1, payload: [])
            // Three Watch streams that stay open (no END_STREAM): the third is one too many.
            for stream: UInt32 in [1, 3, 5] {
                bytes += try Self.requestHeaders(stream: stream, path: "/etcdserverpb.Watch/Watch", encoder: &encoder)
            }
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            let counts = try await counts { $0.goaways > 0 }
            #expect(counts.settings[0x3] == 2, "SETTINGS_MAX_CONCURRENT_STREAMS: \(counts.settings)")
            // swift-nio-http2 treats the extra stream as a connection error (grpc-go refuses the
            // stream alone); well-behaved clients wait for a free stream and never see it.
            #expect(counts.lastGoaway?.errorCode == 0x1, "PROTOCOL_ERROR; frames from the server: \(counts.frames)")
            try? await channel.close()
            try await PingFloodTests.rangeSucceeds(port: port)
        }
    }

    @Test("a client that cancels thousands of calls on one connection (clientv3's KeepAliveOnce does) keeps it")
    func manyResets() async throws {
        try await withServerHandle { _, port in
            let (channel, collector) = try await PingFloodTests.connectRaw(port: port)
            var encoder = HPACKEncoder(allocator: channel.allocator)
            var bytes = ClientPingResponderTests.preface + ClientPingResponderTests.frame(type: 0x4, payload: [])
            // 2,000 keepalive streams, each opened and reset at once: ten times swift-nio-http2's
            // default limit of 200 resets in 30 s.
            for index in 0..<2_000 {
                let stream = UInt32(2 * index + 1)
                bytes += try Self.requestHeaders(stream: stream, path: "/etcdserverpb.Lease/LeaseKeepAlive", encoder: &encoder)
                bytes += ClientPingResponderTests.frame(type: 0x3, stream: stream, payload: [0, 0, 0, 0x8])
            }
            // A PING after them all: its ACK means every frame before it was read.
            bytes += ClientPingResponderTests.frame(type: 0x6, payload: ClientPingResponderTests.bdpPayload)
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            let deadline = ContinuousClock.now.advanced(by: .seconds(20))
            while collector.counts.pingAcks == 0, collector.counts.goaways == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(collector.counts.goaways == 0, "GOAWAY \(String(describing: collector.counts.lastGoaway))")
            #expect(collector.counts.pingAcks == 1)
            #expect(channel.isActive)
            try await channel.close()
        }
    }

    /// The bytes of a HEADERS frame (END_HEADERS, not END_STREAM) opening a gRPC call to `path`.
    private static func requestHeaders(stream: UInt32, path: String, encoder: inout HPACKEncoder) throws -> [UInt8] {
        var block = ByteBuffer()
        try encoder.encode(
            headers: [
                ":method": "POST", ":scheme": "http", ":path": path,
                ":authority": "127.0.0.1", "content-type": "application/grpc", "te": "trailers",
            ], to: &block)
        return ClientPingResponderTests.frame(type: 0x1, flags: 0x4, stream: stream, payload: Array(block.readableBytesView))
    }

    private static func error(_ call: () async throws -> Void) async -> RPCError? {
        do {
            try await call()
            return nil
        } catch {
            return error as? RPCError
        }
    }
}
