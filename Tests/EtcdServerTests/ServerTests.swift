import EtcdAPI
import EtcdCommon
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import Testing

@Suite("Server over gRPC")
struct ServerTests {
    @Test("puts, reads and transactions round-trip with etcd's headers")
    func roundTrip() async throws {
        try await withServer { port in
            try await withKVClient(port: port) { kv, _ in
                var put = Etcdserverpb_PutRequest()
                put.key = Data("a")
                put.value = Data("1")
                let putResponse = try await kv.put(put)
                #expect(putResponse.header.revision == 2)
                #expect(putResponse.header.memberID == 0x8e9e_05c5_2164_694d)
                #expect(putResponse.header.clusterID == 0xcdf8_1819_4e3a_8c32)

                var get = Etcdserverpb_RangeRequest()
                get.key = Data("a")
                let range = try await kv.range(get)
                #expect(range.kvs.map(\.value) == [Data("1")])
                #expect(range.header.revision == 2)

                var compare = Etcdserverpb_Compare()
                compare.key = Data("a")
                compare.target = .value
                compare.result = .equal
                compare.targetUnion = .value(Data("1"))
                var op = Etcdserverpb_RequestOp()
                put.value = Data("2")
                op.request = .requestPut(put)
                var txn = Etcdserverpb_TxnRequest()
                txn.compare = [compare]
                txn.success = [op]
                let txnResponse = try await kv.txn(txn)
                #expect(txnResponse.succeeded)
                #expect(txnResponse.header.revision == 3)
            }
        }
    }

    @Test("a --listen-peer-urls address that cannot be bound stops the start with an error naming that URL")
    func unbindablePeerURL() async throws {
        // A port another listener holds, so the second peer URL cannot be bound.
        let occupant = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let taken = try #require(occupant.localAddress?.port)
        defer { occupant.close(promise: nil) }
        let blocked = EndpointURL(scheme: "http", host: "127.0.0.1", port: taken)
        let error = await #expect(throws: ConfigurationError.self) {
            try await withServer(configure: {
                $0.listenPeerURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0), blocked]
            }) { _ in }
        }
        #expect(error?.description.hasPrefix("cannot listen for peers on \(blocked):") == true, "\(String(describing: error))")
    }

    @Test("errors carry etcd's status code and message")
    func errors() async throws {
        try await withServer(configure: { $0.maxRequestBytes = 1024 }) { port in
            try await withKVClient(port: port) { kv, _ in
                let empty = await #expect(throws: RPCError.self) { _ = try await kv.put(Etcdserverpb_PutRequest()) }
                #expect(empty?.code == .invalidArgument)
                #expect(empty?.message == "etcdserver: key is not provided")

                var big = Etcdserverpb_PutRequest()
                big.key = Data("big")
                big.value = Data(repeating: 7, count: 2000)
                let tooLarge = await #expect(throws: RPCError.self) { _ = try await kv.put(big) }
                #expect(tooLarge?.code == .invalidArgument)
                #expect(tooLarge?.message == "etcdserver: request is too large")

                var future = Etcdserverpb_RangeRequest()
                future.key = Data("a")
                future.revision = 100
                let futureError = await #expect(throws: RPCError.self) { _ = try await kv.range(future) }
                #expect(futureError?.code == .outOfRange)
                #expect(futureError?.message == "etcdserver: mvcc: required revision is a future revision")
            }
        }
    }

    @Test("concurrent writers each get a distinct revision and all writes are kept")
    func concurrentWrites() async throws {
        try await withServer { port in
            try await withKVClient(port: port) { kv, _ in
                let writers = 8
                let perWriter = 50
                let revisions = try await withThrowingTaskGroup(of: [Int64].self) { group in
                    for writer in 0..<writers {
                        group.addTask {
                            var seen: [Int64] = []
                            for index in 0..<perWriter {
                                var put = Etcdserverpb_PutRequest()
                                put.key = Data("w\(writer)/\(index)")
                                put.value = Data("v")
                                seen.append(try await kv.put(put).header.revision)
                            }
                            return seen
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(Set(revisions).count == writers * perWriter)
                #expect(revisions.max() == Int64(writers * perWriter + 1))
                var all = Etcdserverpb_RangeRequest()
                all.key = Data("w")
                all.rangeEnd = Data("x")
                all.countOnly = true
                #expect(try await kv.range(all).count == Int64(writers * perWriter))
            }
        }
    }

    @Test("data and revisions survive a restart, and revisions continue")
    func restart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-restart-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withServer(dataDirectory: directory) { port in
            try await withKVClient(port: port) { kv, _ in
                for index in 0..<20 {
                    var put = Etcdserverpb_PutRequest()
                    put.key = Data("k\(index % 5)")
                    put.value = Data("v\(index)")
                    _ = try await kv.put(put)
                }
                var delete = Etcdserverpb_DeleteRangeRequest()
                delete.key = Data("k4")
                _ = try await kv.deleteRange(delete)
            }
        }
        try await withServer(dataDirectory: directory) { port in
            try await withKVClient(port: port) { kv, _ in
                var all = Etcdserverpb_RangeRequest()
                all.key = Data("k")
                all.rangeEnd = Data("l")
                let range = try await kv.range(all)
                #expect(range.header.revision == 22)
                #expect(range.kvs.map(\.key) == ["k0", "k1", "k2", "k3"].map { Data($0) })
                #expect(range.kvs.map(\.version) == [4, 4, 4, 4])
                #expect(range.kvs.map(\.modRevision) == [17, 18, 19, 20])
                #expect(range.kvs.map(\.createRevision) == [2, 3, 4, 5])
                var old = Etcdserverpb_RangeRequest()
                old.key = Data("k4")
                old.revision = 21
                #expect(try await kv.range(old).kvs.first?.value == Data("v19"))
                var put = Etcdserverpb_PutRequest()
                put.key = Data("next")
                #expect(try await kv.put(put).header.revision == 23)
            }
        }
    }
}

@Suite("Data directory")
struct DataDirectoryTests {
    @Test("a second member on the same data directory is refused while the first runs")
    func exclusive() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-lock-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withServer(dataDirectory: directory) { _ in
            let error = await #expect(throws: ConfigurationError.self) {
                try await withServer(dataDirectory: directory) { _ in }
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains("in use by another etcd process"))
        }
        // Released once the first member stopped.
        try await withServer(dataDirectory: directory) { _ in }
    }
}
