import EtcdAPI
import EtcdBackend
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Testing

/// A member whose backend fails must stop cleanly: the write that hit the failure and everything
/// after it get an error, no read sees the rolled-back store, nothing traps, and the server
/// ends with an error (the `etcd` executable then exits non-zero).
@Suite("A member whose storage fails")
struct MemberFailureTests {
    @Test("after the backend fails, writes and reads (linearizable or serializable) get errors, and the server stops with one")
    func backendFailure() async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("etcd-failure-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = ServerConfiguration()
        configuration.dataDirectory = directory
        configuration.listenClientURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
        configuration.listenPeerURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
    // A lone member still listens for peers, as etcd does; on a free port, so tests run side by side.
    configuration.listenPeerURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
        var logger = Logger(label: "etcd.test")
        logger.logLevel = .critical
        let server = EtcdServer(configuration: configuration, logger: logger)
        let run = Task { try await server.run() }
        defer { run.cancel() }
        let port = try #require(await server.clientAddresses().first?.port)

        try await withKVClient(port: port) { kv, _ in
            _ = try await kv.put(Self.put("acknowledged", "1"))

            // Another process holds SQLite's write lock (as a stray `sqlite3` shell would): the
            // member's next backend transaction cannot begin, which fails the apply.
            let rogue = try Backend(path: Backend.databasePath(dataDirectory: directory))
            try await waitUntil { (try? rogue.begin()) != nil }
            defer { rogue.rollback() }

            let failedWrite = await #expect(throws: RPCError.self) { try await kv.put(Self.put("lost", "2")) }
            #expect(failedWrite?.code == .internalError || failedWrite?.code == .unavailable)

            // The member has stopped: nothing is served from it any more.
            var linearizable = Etcdserverpb_RangeRequest()
            linearizable.key = Data("acknowledged")
            var serializable = linearizable
            serializable.serializable = true
            for request in [linearizable, serializable] {
                let error = await #expect(throws: RPCError.self) { try await kv.range(request) }
                #expect(error?.code == .unavailable, "\(String(describing: error))")
            }
        }
        // The server's run ends with the failure, within a bounded time.
        let outcome = try await withThrowingTaskGroup(of: Result<Void, any Error>?.self) { group in
            group.addTask { await run.result }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        let result = try #require(outcome, "the server did not stop within 30 s after its backend failed")
        #expect(throws: (any Error).self) { try result.get() }

        // Nothing acknowledged is lost: a restart replays the WAL over the committed backend.
        try await withServer(dataDirectory: directory) { port in
            try await withKVClient(port: port) { kv, _ in
                var request = Etcdserverpb_RangeRequest()
                request.key = Data("acknowledged")
                let value = try await kv.range(request).kvs.first?.value
                #expect(value == Data("1"))
            }
        }
    }

    private static func put(_ key: String, _ value: String) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key)
        request.value = Data(value)
        return request
    }
}
