import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import Synchronization
import Testing

@testable import EtcdServer

/// etcd's watch guarantees, checked end to end over gRPC against the store's history as Range
/// reports it (not as Watch does): ordered, unique, atomic, reliable, resumable, bookmarkable.
@Suite("Watch guarantees")
struct WatchGuaranteesTests {
    /// One revision's changes as the tests compare them, sorted by key within the revision.
    struct Change: Hashable, Comparable, CustomStringConvertible {
        var revision: Int64
        var key: String
        /// nil for a delete.
        var value: String?
        var previous: String?

        static func < (lhs: Change, rhs: Change) -> Bool {
            (lhs.revision, lhs.key) < (rhs.revision, rhs.key)
        }

        var description: String { "\(revision):\(key)=\(value ?? "<deleted>")" }
    }

    /// The store's history from revision 2 through `last`, rebuilt by reading every key at every
    /// revision with Range and comparing neighbours.
    static func history(
        _ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, through last: Int64
    ) async throws -> [Change] {
        var previous: [String: String] = [:]
        var changes: [Change] = []
        for revision in 1...last {
            var request = Etcdserverpb_RangeRequest()
            request.key = Data([0])
            request.rangeEnd = Data([0])
            request.revision = revision
            let response = try await kv.range(request)
            var current: [String: String] = [:]
            for kv in response.kvs {
                let key = String(decoding: kv.key, as: UTF8.self)
                let value = String(decoding: kv.value, as: UTF8.self)
                current[key] = value
                if kv.modRevision == revision {
                    changes.append(Change(revision: revision, key: key, value: value, previous: previous[key]))
                }
            }
            for (key, value) in previous where current[key] == nil {
                changes.append(Change(revision: revision, key: key, value: nil, previous: value))
            }
            previous = current
        }
        return changes.sorted()
    }

    /// What a watcher asked for.
    struct Registration: CustomStringConvertible {
        var key: String
        var rangeEnd: String
        var start: Int64
        var filters: [Etcdserverpb_WatchCreateRequest.FilterType]
        var prevKV: Bool

        func wants(_ change: Change) -> Bool {
            guard change.revision >= start else { return false }
            let inRange: Bool
            if rangeEnd.isEmpty {
                inRange = change.key == key
            } else if rangeEnd == "\0" {
                inRange = change.key >= key
            } else {
                inRange = change.key >= key && change.key < rangeEnd
            }
            if change.value == nil && filters.contains(.nodelete) { return false }
            if change.value != nil && filters.contains(.noput) { return false }
            return inRange
        }

        var description: String { "[\(key), \(rangeEnd.debugDescription)) from \(start) \(filters) prevKV \(prevKV)" }
    }

    /// The events of one watcher's responses, checked for order and atomicity on the way: within a
    /// response revisions never decrease, and a response starts after the previous one ended (so
    /// no revision is split or repeated across responses).
    static func events(
        of responses: [Etcdserverpb_WatchResponse], watchID: Int64, seed: UInt64
    ) -> [Change] {
        var changes: [Change] = []
        var lastRevision: Int64 = 0
        for response in responses where response.watchID == watchID && !response.events.isEmpty {
            let revisions = response.events.map(\.kv.modRevision)
            #expect(revisions == revisions.sorted(), "seed \(seed): revisions out of order inside a response: \(revisions)")
            #expect(revisions[0] > lastRevision, "seed \(seed): response starts at \(revisions[0]) after \(lastRevision)")
            lastRevision = revisions.last!
            for event in response.events {
                let key = String(decoding: event.kv.key, as: UTF8.self)
                let value: String? = event.type == .put ? String(decoding: event.kv.value, as: UTF8.self) : nil
                let previous: String? = event.hasPrevKv ? String(decoding: event.prevKv.value, as: UTF8.self) : nil
                changes.append(Change(revision: event.kv.modRevision, key: key, value: value, previous: previous))
            }
        }
        return changes
    }

    @Test(
        "concurrent writers; watchers from random past revisions, cancelled and resumed: each gets exactly the store's history",
        arguments: [UInt64(1), 2, 3]
    )
    func randomized(seed: UInt64) async throws {
        print("watch guarantees: seed \(seed)")
        try await withServer { port in
            try await withKVClient(port: port) { kv, client in
                try await Self.runRandomized(seed: seed, kv: kv, watch: Etcdserverpb_Watch.Client(wrapping: client))
            }
        }
    }

    static func runRandomized(
        seed: UInt64, kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>,
        watch: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix>
    ) async throws {
        let keys = (0..<8).map { "k\($0)" }
        func put(_ key: String, _ value: String) -> Etcdserverpb_RequestOp {
            var op = Etcdserverpb_RequestOp()
            op.requestPut.key = Data(key.utf8)
            op.requestPut.value = Data(value.utf8)
            return op
        }
        func delete(_ key: String) -> Etcdserverpb_RequestOp {
            var op = Etcdserverpb_RequestOp()
            op.requestDeleteRange.key = Data(key.utf8)
            return op
        }
        // Some history before any watcher exists.
        for (index, key) in keys.enumerated() {
            var request = Etcdserverpb_PutRequest()
            request.key = Data(key.utf8)
            request.value = Data("initial\(index)".utf8)
            _ = try await kv.put(request)
        }

        let writersDone = WritersDone()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<3 {
                group.addTask {
                    var random = SeededGenerator(seed: seed &* 1_000 &+ UInt64(writer))
                    for step in 0..<70 {
                        let chosen = keys.shuffled(using: &random)
                        var txn = Etcdserverpb_TxnRequest()
                        switch Int.random(in: 0..<10, using: &random) {
                        case 0...5: txn.success = [put(chosen[0], "w\(writer)-\(step)")]
                        case 6...7: txn.success = [delete(chosen[0])]
                        default:
                            // Several keys in one revision: watchers must see them together.
                            txn.success = [put(chosen[0], "w\(writer)-\(step)a"), put(chosen[1], "w\(writer)-\(step)b"), delete(chosen[2])]
                        }
                        _ = try await kv.txn(txn)
                        if Int.random(in: 0..<4, using: &random) == 0 { try await Task.sleep(for: .milliseconds(2)) }
                    }
                    writersDone.count.add(1, ordering: .relaxed)
                }
            }
            for session in 0..<10 {
                group.addTask {
                    var random = SeededGenerator(seed: seed &* 7_919 &+ UInt64(session))
                    try await Task.sleep(for: .milliseconds(Int64.random(in: 0...60, using: &random)))
                    let current = try await kv.range(Etcdserverpb_RangeRequest.with { $0.key = Data("k0".utf8) }).header.revision
                    let shapes: [(String, String)] = [("k3", ""), ("k", "l"), ("k2", "k6"), ("k5", "\0"), ("", "\0")]
                    let shape = shapes.randomElement(using: &random)!
                    let filters: [Etcdserverpb_WatchCreateRequest.FilterType] =
                        [[], [], [.noput], [.nodelete]].randomElement(using: &random)!
                    let start = Int64.random(in: 2...current, using: &random)
                    let registration = Registration(
                        key: shape.0, rangeEnd: shape.1, start: start, filters: filters,
                        prevKV: Bool.random(using: &random))
                    let resumeAfter = Int.random(in: 1...6, using: &random)
                    try await Self.watchAndResume(
                        registration, resumeAfter: resumeAfter, watch: watch, kv: kv, writersDone: writersDone,
                        seed: seed, session: session)
                }
            }
            try await group.waitForAll()
        }
    }

    /// Watches from `registration.start`, cancels once `resumeAfter` responses with events came,
    /// resumes on a new stream from the last revision seen + 1, then, once the writers are done,
    /// uses a progress response as the bookmark that everything up to its revision has arrived.
    static func watchAndResume(
        _ registration: Registration, resumeAfter: Int,
        watch: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix>,
        kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, writersDone: WritersDone,
        seed: UInt64, session: Int
    ) async throws {
        let context = "seed \(seed) session \(session) \(registration)"
        let first = WatchStreamClient(watch)
        first.create(
            key: registration.key, rangeEnd: registration.rangeEnd, start: registration.start,
            id: 0, prevKV: registration.prevKV, filters: registration.filters)
        try await first.waitFor("created (\(context))") { $0.contains(where: \.created) }
        // Wait for some events, or for the writers to finish (a narrow filter may see few).
        try await first.waitFor(timeout: .seconds(60), "events (\(context))") { responses in
            responses.filter { !$0.events.isEmpty }.count >= resumeAfter || writersDone.count.load(ordering: .relaxed) == 3
        }
        first.cancel(0)
        let firstResponses = try await first.waitFor("canceled (\(context))") { $0.contains { $0.canceled } }
        await first.close()
        let before = Self.events(of: firstResponses, watchID: 0, seed: seed)
        let resumeFrom = (before.last?.revision ?? registration.start - 1) + 1

        let second = WatchStreamClient(watch)
        second.create(
            key: registration.key, rangeEnd: registration.rangeEnd, start: resumeFrom, id: 42,
            prevKV: registration.prevKV, filters: registration.filters)
        try await second.waitFor("created again (\(context))") { $0.contains(where: \.created) }
        while writersDone.count.load(ordering: .relaxed) < 3 { try await Task.sleep(for: .milliseconds(10)) }
        let final = try await kv.range(Etcdserverpb_RangeRequest.with { $0.key = Data("k0".utf8) }).header.revision
        // Bookmark: a progress response at revision R comes after every event up to R.
        second.requestProgress()
        let secondResponses = try await second.waitFor("a progress response at \(final) (\(context))") { responses in
            responses.contains { $0.watchID == -1 && $0.header.revision >= final }
        }
        let progressIndex = secondResponses.firstIndex { $0.watchID == -1 && $0.header.revision >= final }!
        let bookmark = secondResponses[progressIndex].header.revision
        await second.close()
        let after = Self.events(of: Array(secondResponses[..<progressIndex]), watchID: 42, seed: seed)

        let history = try await Self.history(kv, through: bookmark)
        let expected = history.filter(registration.wants).map { change -> Change in
            var change = change
            // prev_kv is only there when asked for, and never for a key's creation.
            if !registration.prevKV { change.previous = nil }
            return change
        }
        let got = (before + after).sorted()
        #expect(got == expected, "\(context): resumed at \(resumeFrom), bookmark \(bookmark)")
        #expect(
            (before + after).map(\.revision) == got.map(\.revision),
            "\(context): revisions out of order across the resume")
    }

    @Test("a client that stops reading is moved to catch-up: other streams go on, and it later gets every event in order")
    func slowClient() async throws {
        try await withServerHandle(configure: { $0.unsafeNoFsync = true }) { server, port in
            try await withKVClient(port: port) { kv, client in
                // The slow client has a connection of its own, so only its stream backs up.
                try await withKVClient(port: port) { _, slowConnection in
                    let slow = WatchStreamClient(Etcdserverpb_Watch.Client(wrapping: slowConnection))
                    let fast = WatchStreamClient(Etcdserverpb_Watch.Client(wrapping: client))
                    slow.create(key: "big/", rangeEnd: "big0")
                    fast.create(key: "big/", rangeEnd: "big0")
                    try await slow.waitFor("created") { $0.contains(where: \.created) }
                    try await fast.waitFor("created") { $0.contains(where: \.created) }
                    slow.setPaused(true)
                    // 48 MB of values: far more than the outbox, the connection's windows and the
                    // sockets' buffers together.
                    let value = Data(repeating: 0x78, count: 48 * 1_024)
                    let puts = 1_000
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for writer in 0..<8 {
                            group.addTask {
                                for index in stride(from: writer, to: puts, by: 8) {
                                    _ = try await kv.put(Etcdserverpb_PutRequest.with {
                                        $0.key = Data("big/\(index)".utf8)
                                        $0.value = value
                                    })
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    // Once moved to catch-up, the watcher stays there while its client reads nothing.
                    let sawCatchUp = (server.watchCounts?.unsynced ?? 0) > 0
                    func eventCount(_ responses: [Etcdserverpb_WatchResponse]) -> Int {
                        responses.reduce(0) { $0 + $1.events.count }
                    }
                    try await fast.waitFor("every event on the stream that reads") { eventCount($0) == puts }
                    #expect(eventCount(slow.responses) < puts, "the paused client received everything anyway")
                    #expect(sawCatchUp, "the paused client's watcher was never moved to catch-up")
                    slow.setPaused(false)
                    let responses = try await slow.waitFor(timeout: .seconds(60), "the slow client's events") {
                        eventCount($0) >= puts
                    }
                    let revisions = responses.flatMap { $0.events.map(\.kv.modRevision) }
                    #expect(revisions == Array(2...Int64(puts + 1)), "events missing, repeated or out of order")
                    await slow.close()
                    await fast.close()
                }
            }
        }
    }

    @Test("stopping the server ends open watch streams instead of waiting for their clients")
    func shutdownWithOpenStreams() async throws {
        let clock = ContinuousClock()
        let created = AsyncStream<Void>.makeStream()
        let (clientTask, stopping) = try await withServer { port in
            // The client outlives the server: it keeps its stream open and waits for the server to
            // end it.
            let task = Task {
                try await withKVClient(port: port) { _, client in
                    let stream = WatchStreamClient(Etcdserverpb_Watch.Client(wrapping: client))
                    stream.create(key: "a")
                    try await stream.waitFor("created") { $0.contains(where: \.created) }
                    created.continuation.yield()
                    let outcome = await stream.ended(timeout: .seconds(20))
                    await stream.close()
                    return outcome
                }
            }
            for await _ in created.stream { break }
            return (task, clock.now)
        }
        // A graceful stop would wait for the stream's client forever if the server did not end it.
        #expect(clock.now - stopping < .seconds(10), "the server took \(clock.now - stopping) to stop")
        let outcome = try await clientTask.value
        #expect(outcome.contains("unavailable"), "the client saw: \(outcome)")
    }

    @Test("clients that vanish mid-stream leave no watchers or streams behind")
    func abruptDisconnects() async throws {
        try await withServerHandle { server, port in
            try await withKVClient(port: port) { kv, client in
                let watch = Etcdserverpb_Watch.Client(wrapping: client)
                var streams: [WatchStreamClient] = []
                for index in 0..<20 {
                    let stream = WatchStreamClient(watch)
                    for key in 0..<25 { stream.create(key: "key\(key)", start: index % 2 == 0 ? 0 : 1) }
                    streams.append(stream)
                }
                for stream in streams {
                    try await stream.waitFor("25 created") { $0.filter(\.created).count == 25 }
                }
                #expect(server.watchCounts?.watchers == 500)
                _ = try await kv.put(Etcdserverpb_PutRequest.with { $0.key = Data("key1".utf8) })
                // Half go away without cancelling anything.
                for stream in streams.prefix(10) { await stream.close() }
                try await waitUntil { server.watchCounts?.streams == 10 && server.watchCounts?.watchers == 250 }
                for stream in streams.suffix(10) { await stream.close() }
                try await waitUntil { server.watchCounts?.streams == 0 && server.watchCounts?.watchers == 0 }
                // The server still serves watches.
                let stream = WatchStreamClient(watch)
                stream.create(key: "key1", start: 1)
                try await stream.waitFor("history after the disconnects") { $0.contains { !$0.events.isEmpty } }
                await stream.close()
            }
        }
    }
}

/// How many writers have finished, shared with the watcher sessions.
final class WritersDone: Sendable {
    let count = Atomic<Int>(0)
}

/// A small deterministic generator (splitmix64), so a seed reproduces a test's choices.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
