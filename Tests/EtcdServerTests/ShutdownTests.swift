import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import SwiftProtobuf
import Synchronization
import Testing

/// SIGTERM to the `etcd` executable: every stream ends, and the process exits cleanly within the
/// shutdown grace period even when a call never finishes by itself.
@Suite("Shutdown")
struct ShutdownTests {
    /// How one call ended, and when.
    struct Ending: Sendable {
        var code: RPCError.Code?
        var message: String
        var at: ContinuousClock.Instant
    }

    /// Where the calls report; `ready` counts calls known to be established on the server.
    final class Board: Sendable {
        let endings = Mutex<[String: Ending]>([:])
        let ready = Atomic<Int>(0)

        func end(_ name: String, _ error: (any Error)?) {
            let code = (error as? RPCError)?.code
            let message = error.map { "\($0)" } ?? "no error"
            endings.withLock { $0[name] = Ending(code: code, message: message, at: .now) }
        }
    }

    @Test("SIGTERM ends keepalive and watch streams and a call whose request never ends at once; exit code 0")
    func sigtermEndsEverything() async throws {
        try await withEtcd(.swiftEtcd, options: EtcdOptions(stopGracePeriod: .seconds(20))) { server in
            let child = try #require(server.child)
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                var grant = Etcdserverpb_LeaseGrantRequest()
                grant.ttl = 60
                let leaseID = try await client.lease.leaseGrant(grant).id
                let board = Board()
                try await withThrowingTaskGroup(of: Void.self) { calls in
                    calls.addTask { await Self.keepAlive(client, leaseID: leaseID, board: board) }
                    calls.addTask { await Self.watch(client, board: board) }
                    calls.addTask { await Self.stuckRange(client, board: board) }
                    try await waitUntil { board.ready.load(ordering: .relaxed) == 2 }
                    // A unary call on the same connection, answered after the stuck call's
                    // HEADERS (frames are read in order), so its handler is running by now.
                    _ = try await client.kv.range(Etcdserverpb_RangeRequest.with { $0.key = Data("probe") })
                    let start = ContinuousClock.now
                    child.send(signal: SIGTERM)
                    let exit = await child.waitForExit(timeout: .seconds(15))
                    let stopped = ContinuousClock.now - start
                    print("SIGTERM to exit: \(stopped)")
                    #expect(exit == ProcessExit(status: 0, signaled: false))
                    #expect(stopped < .seconds(3))
                    try await calls.waitForAll()
                    let endings = board.endings.withLock { $0 }
                    for name in ["keepalive", "watch", "stuck range"] {
                        let ending = try #require(endings[name], "\(name) never ended")
                        print("\(name) ended after \(ending.at - start) with \(ending.message)")
                    }
                    // Streams do not wait for the grace period.
                    #expect(try #require(endings["keepalive"]).at - start < .seconds(3))
                    #expect(try #require(endings["watch"]).at - start < .seconds(3))
                    // etcd's clients see UNAVAILABLE when it stops and retry elsewhere.
                    #expect(endings["keepalive"]?.code == .unavailable)
                    #expect(endings["stuck range"]?.code != nil)
                }
            }
        }
    }

    @Test("a watch stuck writing to a client that does not read holds SIGTERM for the grace period, no longer")
    func gracePeriodIsBounded() async throws {
        try await withEtcd(.swiftEtcd, options: EtcdOptions(stopGracePeriod: .seconds(20))) { server in
            let child = try #require(server.child)
            try await withEtcdGRPCClient(port: server.clientPort) { client in
                let watch = WatchStreamClient(client.watch)
                watch.create(key: "busy")
                try await watch.waitFor("created") { $0.contains { $0.created } }
                // The client stops reading; 24 MB of events fill every window and buffer on the
                // way, and the server's watch stream waits to write.
                watch.setPaused(true)
                let value = Data(repeating: 0x61, count: 600 * 1024)
                for _ in 0..<40 {
                    _ = try await client.kv.put(Etcdserverpb_PutRequest.with { $0.key = Data("busy"); $0.value = value })
                }
                let start = ContinuousClock.now
                child.send(signal: SIGTERM)
                let exit = await child.waitForExit(timeout: .seconds(15))
                let stopped = ContinuousClock.now - start
                print("SIGTERM to exit with a stuck watch: \(stopped)")
                #expect(exit == ProcessExit(status: 0, signaled: false))
                // The default grace period is 7 s, as etcd's request timeout.
                #expect(stopped >= .seconds(6))
                #expect(stopped < .seconds(10))
                #expect(server.logTail(lines: 10).contains("outlived the shutdown grace period"))
                watch.setPaused(false)
                await watch.close()
            }
        }
    }

    static func keepAlive(_ client: EtcdGRPCClient, leaseID: Int64, board: Board) async {
        do {
            try await client.lease.leaseKeepAlive(
                requestProducer: { writer in
                    try await writer.write(Etcdserverpb_LeaseKeepAliveRequest.with { $0.id = leaseID })
                    // The stream stays open until the server ends it.
                    try await Task.sleep(for: .seconds(60))
                },
                onResponse: { response in
                    for try await _ in response.messages { board.ready.add(1, ordering: .relaxed) }
                }
            )
            board.end("keepalive", nil)
        } catch {
            board.end("keepalive", error)
        }
    }

    static func watch(_ client: EtcdGRPCClient, board: Board) async {
        do {
            try await client.watch.watch(
                requestProducer: { writer in
                    var request = Etcdserverpb_WatchRequest()
                    request.createRequest.key = Data("watched")
                    try await writer.write(request)
                    try await Task.sleep(for: .seconds(60))
                },
                onResponse: { response in
                    for try await message in response.messages where message.created {
                        board.ready.add(1, ordering: .relaxed)
                    }
                }
            )
            board.end("watch", nil)
        } catch {
            board.end("watch", error)
        }
    }

    /// A Range whose request never ends (its message comes, the end of the stream does not): the
    /// server waits for that end before it calls the handler.
    static func stuckRange(_ client: EtcdGRPCClient, board: Board) async {
        do {
            let request = StreamingClientRequest<Etcdserverpb_RangeRequest> { writer in
                try await writer.write(Etcdserverpb_RangeRequest.with { $0.key = Data("stuck") })
                try await Task.sleep(for: .seconds(60))
            }
            _ = try await client.client.clientStreaming(
                request: request,
                descriptor: Etcdserverpb_KV.Method.Range.descriptor,
                serializer: ProtoSerializer<Etcdserverpb_RangeRequest>(),
                deserializer: ProtoDeserializer<Etcdserverpb_RangeResponse>(),
                options: .defaults
            ) { response in try response.message }
            board.end("stuck range", nil)
        } catch {
            board.end("stuck range", error)
        }
    }
}

struct ProtoSerializer<Message: SwiftProtobuf.Message>: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try message.serializedBytes() as [UInt8])
    }
}

struct ProtoDeserializer<Message: SwiftProtobuf.Message>: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        try serializedMessageBytes.withUnsafeBytes { try Message(serializedBytes: Array($0)) }
    }
}
