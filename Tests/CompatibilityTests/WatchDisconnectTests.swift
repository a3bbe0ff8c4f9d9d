import EtcdAPI
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Watch clients that go away without cancelling: processes killed with their streams open, some
/// of them stopped first so that the server's sends to them back up, and in-process streams reset
/// while events flow. Afterwards the server must still accept writes and serve new watches; the
/// same checks run on real etcd, and their records are compared.
@Suite("Watch clients that disconnect abruptly")
struct WatchDisconnectTests {
    static let watcherProcesses = 6
    static let clients = 3
    static let streamsPerClient = 8
    static let watchersPerStream = 3
    static let stalledPuts = 256
    static let resetPuts = 200

    @Test("killed, stalled and reset watch clients leave a server that still writes and watches")
    func abruptDisconnects() async throws {
        try await expectCompatible("watch abrupt disconnects") { side in
            try await side.etcdctl("put", "d/seed", "s")
            try await Self.killWatcherProcesses(side)
            try await Self.resetInProcessStreams(side)
            try await side.server.withGRPCClient { etcd in
                try await Self.checkServerStillWorks(side, etcd)
            }
        }
    }

    /// etcdctl watchers on `d/`, each with its own connection: half are stopped (SIGSTOP) so that
    /// they no longer read, 1 MiB of events is written, then all are killed (SIGKILL), which closes
    /// their connections without any HTTP/2 goodbye.
    static func killWatcherProcesses(_ side: CompatibilitySession) async throws {
        var watchers: [BackgroundEtcdctl] = []
        do {
            for _ in 0..<watcherProcesses {
                watchers.append(try side.server.etcdctl.startInBackground(["watch", "d/", "--prefix", "--rev=2"]))
            }
            var established = 0
            for watcher in watchers {
                if await watcher.waitForLine("s") { established += 1 }
            }
            side.record("etcdctl watchers that replayed d/seed", .text("\(established) of \(watcherProcesses)"))
            for (index, watcher) in watchers.enumerated() where index % 2 == 0 {
                watcher.send(signal: SIGSTOP)
            }
            let written = await putMany(
                port: side.server.clientPort, prefix: "d/stalled-", count: stalledPuts, valueBytes: 4096)
            side.record(
                "puts of 4 KiB while half the watchers are stopped",
                .text("\(written) of \(stalledPuts) succeeded")
            )
            for watcher in watchers {
                watcher.send(signal: SIGKILL)
            }
        } catch {
            for watcher in watchers { await watcher.stop() }
            throw error
        }
        var killed = 0
        for watcher in watchers {
            if await watcher.stop().exit == ProcessExit(status: SIGKILL, signaled: true) { killed += 1 }
        }
        side.record("etcdctl watchers ended by SIGKILL", .text("\(killed) of \(watcherProcesses)"))
    }

    /// Streams with several watchers each, over a few connections, that the client abandons by
    /// cancelling their RPCs (HTTP/2 RST_STREAM) and closing the connections while writes are
    /// still producing events for them.
    static func resetInProcessStreams(_ side: CompatibilitySession) async throws {
        let ready = Counter()
        let port = side.server.clientPort
        let streams = clients * streamsPerClient
        await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<clients {
                group.addTask {
                    try await withEtcdGRPCClient(port: port) { client in
                        try await withThrowingTaskGroup(of: Void.self) { perStream in
                            for _ in 0..<streamsPerClient {
                                perStream.addTask {
                                    try await holdWatchStream(client, ready: ready)
                                }
                            }
                            try await perStream.waitForAll()
                        }
                    }
                }
            }
            let allReady = await poll(timeout: .seconds(30)) { ready.value == streams }
            side.record(
                "in-process streams with \(watchersPerStream) created watchers each",
                .text(allReady ? "all \(streams)" : "\(ready.value) of \(streams) within 30 s")
            )
            // Events flow to every watcher, and go on flowing while the streams are torn down.
            let before = await putMany(port: port, prefix: "d/reset-", count: resetPuts / 4, valueBytes: 512)
            async let during = putMany(
                port: port, prefix: "d/reset-late-", count: resetPuts - resetPuts / 4, valueBytes: 512)
            group.cancelAll()
            side.record(
                "puts of 512 bytes before and while the streams are reset",
                .text("\(before + (await during)) of \(resetPuts) succeeded")
            )
            // The streams end by cancellation, which is their purpose; nothing else may fail.
            while let next = await group.nextResult() {
                if case .failure(let error) = next, !(error is CancellationError) {
                    side.record("a stream's client failed otherwise", .text(String(describing: error)))
                }
            }
        }
    }

    /// Opens one Watch stream with ``watchersPerStream`` watchers on `d/` and holds it open, reading
    /// whatever comes, until the task is cancelled.
    static func holdWatchStream(_ client: EtcdGRPCClient, ready: Counter) async throws {
        try await withWatchStream(client) { stream in
            for _ in 0..<watchersPerStream {
                stream.send(.create("d/", end: "d0"))
            }
            let created = await stream.receive(
                until: { $0.created }, occurrences: watchersPerStream, timeout: .seconds(30))
            if created.count >= watchersPerStream { ready.increment() }
            // Parked until the test cancels it: the cancellation is the abrupt end under test.
            try await Task.sleep(for: .seconds(600))
        }
    }

    /// After the disconnects: writes and reads succeed, a new watch gets its events and answers a
    /// progress request, and (what etcd cannot show but our process can) the server still runs.
    static func checkServerStillWorks(_ side: CompatibilitySession, _ etcd: EtcdGRPCClient) async throws {
        try await side.etcdctl("put", "d/after", "a")
        await side.grpc("KV.Range", KVRequest.range("d/", end: "d0") { $0.countOnly = true }) {
            try await etcd.kv.range($0)
        }
        try await withWatchStream(etcd) { stream in
            await side.watch(stream, .create("d/", end: "d0") { $0.prevKv = true }, expecting: 1)
            await side.grpc("KV.Put", KVRequest.put("d/after", "b")) { try await etcd.kv.put($0) }
            await side.watchReceive(stream, "after put d/after", expecting: 1)
            await side.watch(stream, .progress(), expecting: 1)
        }
        // The revision of the etcdctl put above: the seed, the two batches of puts, then it.
        let afterRevision = 2 + stalledPuts + resetPuts + 1
        try await side.etcdctlInBackground(["watch", "d/after", "--rev=\(afterRevision)"]) { watcher in
            await watcher.waitForLine("b")
        }
        side.record("server process still running", .text("\(side.server.child?.exitStatus == nil)"))
    }

    /// Puts `count` keys `<prefix><n>` with values of `valueBytes` bytes, one after another, and
    /// returns how many succeeded.
    ///
    /// Each batch of 50 uses a connection of its own: etcd's Go server pings with most responses
    /// (gRPC's bandwidth estimation), and NIOHTTP2 closes a connection that receives more than 200
    /// control frames in 30 seconds as a denial-of-service defence.
    static func putMany(port: Int, prefix: String, count: Int, valueBytes: Int) async -> Int {
        let value = String(repeating: "w", count: valueBytes)
        var succeeded = 0
        for batch in stride(from: 0, to: count, by: 50) {
            let done = try? await withEtcdGRPCClient(port: port) { etcd in
                var done = 0
                for index in batch..<min(batch + 50, count) {
                    if (try? await etcd.kv.put(KVRequest.put("\(prefix)\(index)", value))) != nil { done += 1 }
                }
                return done
            }
            succeeded += done ?? 0
        }
        return succeeded
    }
}

/// A count shared by concurrent tasks.
final class Counter: Sendable {
    private let count = Mutex(0)

    var value: Int { count.withLock { $0 } }

    func increment() {
        count.withLock { $0 += 1 }
    }
}
