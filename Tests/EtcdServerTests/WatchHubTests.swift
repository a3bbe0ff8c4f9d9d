import EtcdAPI
import EtcdBackend
import EtcdMVCC
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

@testable import EtcdServer

/// A hub over a real store (in-memory SQLite), written to directly as the Raft loop's apply would,
/// with the messages each stream would send collected without a network.
final class HubFixture: @unchecked Sendable {
    // Unchecked: tests use it from one task at a time; the hub itself is what is under test.
    let handle: ReplicaHandle
    let hub: WatchHub

    init(limits: WatchLimits = WatchLimits()) throws {
        let replica = try Replica(store: MVCCStore(backend: Backend(path: nil)), logger: Logger(label: "hub.test"))
        replica.store.recordsChanges = true
        handle = ReplicaHandle(replica)
        hub = WatchHub(currentRevision: 1, replica: handle, limits: limits)
    }

    enum Change {
        case put(String, String)
        case delete(String)
    }

    /// Writes one revision (a transaction of `changes`) and publishes it, as the Raft loop does.
    @discardableResult
    func write(_ changes: [Change], publish: Bool = true) throws -> Int64 {
        let published = try handle.withReplica { replica -> [RevisionChanges] in
            let store = replica.store
            try store.beginBatch()
            let write = store.beginWrite()
            for change in changes {
                switch change {
                case .put(let key, let value): try write.put(key: Array(key.utf8), value: Array(value.utf8), lease: 0)
                case .delete(let key): _ = try write.deleteRange(.key(Array(key.utf8)))
                }
            }
            write.end()
            try store.commitBatch()
            return store.takeChanges()
        }
        if publish { hub.publish(published) }
        return published.last?.revision ?? 0
    }

    @discardableResult
    func put(_ key: String, _ value: String) throws -> Int64 { try write([.put(key, value)]) }

    func compact(_ revision: Int64) throws {
        try handle.withReplica { replica in
            try replica.store.beginBatch()
            try replica.store.compact(revision)
            try replica.store.commitBatch()
        }
    }

    /// Everything queued on `stream` right now, or nothing (without waiting).
    func drain(_ stream: UInt64) async -> [OutgoingWatchMessage] {
        let messages = await withTaskGroup(of: [OutgoingWatchMessage]?.self) { group in
            group.addTask { await self.hub.nextMessages(on: stream).map(Array.init) }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(20))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
        return messages
    }

    /// Runs catch-up rounds until none has anything to do.
    func catchUp() {
        while hub.catchUpRound() {}
    }

    func create(
        _ stream: UInt64, key: String, rangeEnd: String = "", start: Int64 = 0, id: Int64 = 0,
        filters: [Etcdserverpb_WatchCreateRequest.FilterType] = [], prevKV: Bool = false, progressNotify: Bool = false
    ) {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = Data(key.utf8)
        request.rangeEnd = Data(rangeEnd.utf8)
        request.startRevision = start
        request.watchID = id
        request.filters = filters
        request.prevKv = prevKV
        request.progressNotify = progressNotify
        hub.create(on: stream, request)
    }
}

/// A message as the tests compare it.
enum Seen: Equatable, CustomStringConvertible {
    case created(id: Int64, revision: Int64)
    case refused(reason: String)
    case canceled(id: Int64)
    case compacted(id: Int64, compactRevision: Int64, headerRevision: Int64)
    case progress(id: Int64, revision: Int64)
    case events(id: Int64, header: Int64, [String])

    init(_ message: OutgoingWatchMessage) {
        switch message {
        case .control(let response):
            if response.created && response.canceled {
                self = .refused(reason: response.cancelReason)
            } else if response.created {
                self = .created(id: response.watchID, revision: response.header.revision)
            } else if response.compactRevision != 0 {
                self = .compacted(id: response.watchID, compactRevision: response.compactRevision, headerRevision: response.header.revision)
            } else if response.canceled {
                self = .canceled(id: response.watchID)
            } else {
                self = .progress(id: response.watchID, revision: response.header.revision)
            }
        case .events(let id, let header, let events, _, _, _):
            self = .events(id: id, header: header, events.map(Seen.describe))
        }
    }

    /// `put k=v@rev` or `del k@rev`.
    static func describe(_ event: Mvccpb_Event) -> String {
        let key = String(decoding: event.kv.key, as: UTF8.self)
        switch event.type {
        case .put: return "put \(key)=\(String(decoding: event.kv.value, as: UTF8.self))@\(event.kv.modRevision)"
        default: return "del \(key)@\(event.kv.modRevision)"
        }
    }

    var description: String {
        switch self {
        case .created(let id, let revision): return "created \(id) at \(revision)"
        case .refused(let reason): return "refused: \(reason)"
        case .canceled(let id): return "canceled \(id)"
        case .compacted(let id, let compact, let header): return "compacted \(id) at \(compact) (header \(header))"
        case .progress(let id, let revision): return "progress \(id) at \(revision)"
        case .events(let id, let header, let events): return "events \(id) (header \(header)): \(events)"
        }
    }
}

func seen(_ messages: [OutgoingWatchMessage]) -> [Seen] { messages.map(Seen.init) }

@Suite("Watch hub: matching, history, limits, progress")
struct WatchHubTests {
    @Test("a watcher from now gets each later revision in one message; the created response carries the current revision")
    func live() async throws {
        let fixture = try HubFixture()
        try fixture.put("a", "0")
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a")
        fixture.create(stream, key: "a", rangeEnd: "c")
        try fixture.write([.put("a", "1"), .put("b", "1"), .put("c", "1")])
        try fixture.put("z", "1")
        try fixture.write([.delete("a")])
        #expect(
            seen(await fixture.drain(stream)) == [
                .created(id: 0, revision: 2), .created(id: 1, revision: 2),
                .events(id: 0, header: 3, ["put a=1@3"]), .events(id: 1, header: 3, ["put a=1@3", "put b=1@3"]),
                .events(id: 0, header: 5, ["del a@5"]), .events(id: 1, header: 5, ["del a@5"]),
            ])
    }

    @Test("empty key means \\0, range end \\0 means every key from key on; NOPUT and NODELETE filter")
    func keysAndFilters() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "", rangeEnd: "\0")
        fixture.create(stream, key: "b", rangeEnd: "\0", filters: [.noput])
        fixture.create(stream, key: "", filters: [.nodelete])
        try fixture.write([.put("a", "1"), .put("c", "1")])
        try fixture.write([.delete("a"), .delete("c")])
        #expect(
            seen(await fixture.drain(stream)) == [
                .created(id: 0, revision: 1), .created(id: 1, revision: 1), .created(id: 2, revision: 1),
                .events(id: 0, header: 2, ["put a=1@2", "put c=1@2"]),
                .events(id: 0, header: 3, ["del a@3", "del c@3"]), .events(id: 1, header: 3, ["del c@3"]),
            ])
    }

    @Test("client-chosen IDs, duplicates and empty ranges are refused with etcd's reasons; auto IDs skip taken ones")
    func identifiers() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a", id: 1)
        fixture.create(stream, key: "a", id: 1)
        fixture.create(stream, key: "a")
        fixture.create(stream, key: "a")
        fixture.create(stream, key: "b", rangeEnd: "a")
        fixture.create(stream, key: "b", rangeEnd: "b")
        let other = fixture.hub.openStream()
        fixture.create(other, key: "a", id: 1)
        #expect(
            seen(await fixture.drain(stream)) == [
                .created(id: 1, revision: 1), .refused(reason: "mvcc: duplicate watch ID provided on the WatchStream"),
                .created(id: 0, revision: 1), .created(id: 2, revision: 1),
                .refused(reason: "mvcc: watcher range is empty"), .refused(reason: "mvcc: watcher range is empty"),
            ])
        #expect(seen(await fixture.drain(other)) == [.created(id: 1, revision: 1)])
    }

    @Test("cancel answers for a known watcher and stays silent for an unknown one; a cancelled watcher gets nothing more")
    func cancel() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a")
        fixture.hub.cancel(on: stream, watchID: 7)
        fixture.hub.cancel(on: stream, watchID: 0)
        try fixture.put("a", "1")
        #expect(seen(await fixture.drain(stream)) == [.created(id: 0, revision: 1), .canceled(id: 0)])
        #expect(fixture.hub.counts.watchers == 0)
    }

    @Test("a watcher from a past revision gets history through catch-up, then live revisions, with nothing twice or missing")
    func history() async throws {
        let fixture = try HubFixture()
        for value in 1...5 { try fixture.put("k", "\(value)") }  // revisions 2...6
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "k", start: 3)
        try fixture.put("k", "6")  // 7: published while the watcher is unsynced
        fixture.catchUp()
        try fixture.put("k", "7")  // 8: live
        #expect(
            seen(await fixture.drain(stream)) == [
                .created(id: 0, revision: 6),
                .events(id: 0, header: 7, ["put k=2@3", "put k=3@4", "put k=4@5", "put k=5@6", "put k=6@7"]),
                .events(id: 0, header: 8, ["put k=7@8"]),
            ])
    }

    @Test("catch-up reads whole revisions in batches; a revision larger than a batch is read whole")
    func batches() async throws {
        var limits = WatchLimits()
        limits.catchUpBatchEvents = 3
        let fixture = try HubFixture(limits: limits)
        try fixture.write([.put("a", "1"), .put("b", "1")])  // 2
        try fixture.write([.put("a", "2"), .put("b", "2")])  // 3
        try fixture.write((0..<5).map { .put("k\($0)", "x") })  // 4: five events
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "", rangeEnd: "\0", start: 2)
        var rounds = 0
        while fixture.hub.catchUpRound() { rounds += 1 }
        let messages = seen(await fixture.drain(stream))
        #expect(
            messages == [
                .created(id: 0, revision: 4),
                .events(id: 0, header: 4, ["put a=1@2", "put b=1@2"]),
                .events(id: 0, header: 4, ["put a=2@3", "put b=2@3"]),
                .events(id: 0, header: 4, (0..<5).map { "put k\($0)=x@4" }),
            ])
        #expect(rounds == 3)
    }

    @Test("catch-up batches stay within their byte budget, in whole revisions")
    func batchBytes() async throws {
        var limits = WatchLimits()
        limits.catchUpBatchBytes = 25
        let fixture = try HubFixture(limits: limits)
        try fixture.write([.put("a", String(repeating: "x", count: 9)), .put("b", String(repeating: "x", count: 9))])  // 2: 20 bytes
        try fixture.put("c", String(repeating: "y", count: 9))  // 3: 10 bytes
        try fixture.put("d", String(repeating: "z", count: 40))  // 4: 41 bytes, alone over the budget
        try fixture.put("e", "1")  // 5
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "", rangeEnd: "\0", start: 2)
        fixture.catchUp()
        let sizes = seen(await fixture.drain(stream)).compactMap { message -> [String]? in
            if case .events(_, _, let events) = message { return events.map { String($0.split(separator: "@").last!) } }
            return nil
        }
        #expect(sizes == [["2", "2"], ["3"], ["4"], ["5"]])
    }

    @Test("a start revision in the future waits for it")
    func futureStart() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a", start: 4)
        try fixture.put("a", "2")
        try fixture.put("a", "3")
        try fixture.put("a", "4")
        fixture.catchUp()
        #expect(seen(await fixture.drain(stream)) == [.created(id: 0, revision: 1), .events(id: 0, header: 4, ["put a=4@4"])])
    }

    @Test("a watcher whose history was compacted is cancelled with the compact revision, its ID stays taken")
    func compaction() async throws {
        let fixture = try HubFixture()
        for value in 1...4 { try fixture.put("a", "\(value)") }  // 2...5
        try fixture.compact(4)
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a", start: 2, id: 5)
        fixture.create(stream, key: "a", start: 4, id: 6)
        fixture.catchUp()
        fixture.create(stream, key: "a", id: 5)
        #expect(
            seen(await fixture.drain(stream)) == [
                .created(id: 5, revision: 5), .created(id: 6, revision: 5),
                .compacted(id: 5, compactRevision: 4, headerRevision: 0),
                .events(id: 6, header: 5, ["put a=3@4", "put a=4@5"]),
                .refused(reason: "mvcc: duplicate watch ID provided on the WatchStream"),
            ])
    }

    @Test("a progress request is answered at once when all watchers are synced, else after their history")
    func progressRequests() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.hub.requestProgress(on: stream)
        try fixture.put("a", "1")
        fixture.create(stream, key: "a")
        fixture.hub.requestProgress(on: stream)
        #expect(
            seen(await fixture.drain(stream)) == [.progress(id: -1, revision: 1), .created(id: 0, revision: 2), .progress(id: -1, revision: 2)])

        fixture.create(stream, key: "a", start: 1)
        fixture.hub.requestProgress(on: stream)
        fixture.hub.requestProgress(on: stream)
        try fixture.put("a", "2")
        #expect(seen(await fixture.drain(stream)) == [.created(id: 1, revision: 2), .events(id: 0, header: 3, ["put a=2@3"])])
        fixture.catchUp()
        #expect(seen(await fixture.drain(stream)) == [.events(id: 1, header: 3, ["put a=1@2", "put a=2@3"]), .progress(id: -1, revision: 3)])
    }

    @Test("progress notifications go to synced watchers that asked and were sent nothing since the last tick")
    func progressNotify() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        fixture.create(stream, key: "a", progressNotify: true)
        fixture.create(stream, key: "b", progressNotify: true)
        fixture.create(stream, key: "c")
        _ = await fixture.drain(stream)
        fixture.hub.progressTick(on: stream)
        #expect(seen(await fixture.drain(stream)) == [.progress(id: 0, revision: 1), .progress(id: 1, revision: 1)])
        try fixture.put("a", "1")
        fixture.hub.progressTick(on: stream)
        #expect(seen(await fixture.drain(stream)) == [.events(id: 0, header: 2, ["put a=1@2"]), .progress(id: 1, revision: 2)])
        fixture.hub.progressTick(on: stream)
        #expect(seen(await fixture.drain(stream)) == [.progress(id: 0, revision: 2), .progress(id: 1, revision: 2)])
    }

    @Test("a stream that is not read stays within its limits; its watchers catch up from the backend, in order, exactly once")
    func slowConsumer() async throws {
        var limits = WatchLimits()
        limits.maxOutboxMessages = 4
        limits.catchUpBatchEvents = 5
        let fixture = try HubFixture(limits: limits)
        let slow = fixture.hub.openStream()
        let fast = fixture.hub.openStream()
        fixture.create(slow, key: "k")
        fixture.create(slow, key: "k", rangeEnd: "l")
        fixture.create(fast, key: "k")
        var fastSeen: [Seen] = []
        for value in 1...40 {
            try fixture.put("k", "\(value)")
            fastSeen += seen(await fixture.drain(fast))
            if value % 7 == 0 { fixture.catchUp() }
        }
        #expect(fixture.hub.counts.unsynced == 2, "the unread stream's watchers wait in catch-up")
        #expect(fastSeen.count == 41, "the stream that reads is not held back")
        var slowSeen: [Seen] = []
        while true {
            let batch = await fixture.drain(slow)
            #expect(batch.count <= limits.maxOutboxMessages)
            fixture.catchUp()
            if batch.isEmpty && fixture.hub.counts.unsynced == 0 { break }
            slowSeen += seen(batch)
        }
        slowSeen += seen(await fixture.drain(slow))
        for id in [Int64(0), 1] {
            let events = slowSeen.flatMap { message -> [String] in
                if case .events(id, _, let events) = message { return events }
                return []
            }
            #expect(events == (1...40).map { "put k=\($0)@\($0 + 1)" }, "watcher \(id)")
        }
    }

    @Test("closing a stream removes its watchers; later revisions reach nobody")
    func close() async throws {
        let fixture = try HubFixture()
        let stream = fixture.hub.openStream()
        for _ in 0..<50 { fixture.create(stream, key: "a") }
        fixture.create(stream, key: "a", start: 1)
        #expect(fixture.hub.counts == (watchers: 51, unsynced: 1, streams: 1))
        fixture.hub.closeStream(stream)
        try fixture.put("a", "1")
        fixture.catchUp()
        #expect(fixture.hub.counts == (watchers: 0, unsynced: 0, streams: 0))
        #expect(await fixture.hub.nextMessages(on: stream) == nil)
    }

    @Test("previous values: none for a creation, the older version for an update and a delete")
    func previousValues() throws {
        let fixture = try HubFixture()
        try fixture.put("a", "1")
        try fixture.put("a", "2")
        try fixture.write([.delete("a")])
        let events = try fixture.handle.withReplica { try $0.store.events(from: 2) }
        let previous = fixture.hub.previousValues(for: OutgoingWatchMessage.wire(events)).map { $0.map { String(decoding: $0.value, as: UTF8.self) } }
        #expect(previous == [nil, "1", "2"])
    }

    @Test("responses encoded once per revision are the bytes SwiftProtobuf writes for the same message")
    func wireEncoding() throws {
        var events: [Mvccpb_Event] = []
        for index in 0..<3 {
            var event = Mvccpb_Event()
            event.type = index == 1 ? .delete : .put
            event.kv.key = Data("key\(index)".utf8)
            event.kv.modRevision = 300
            if index != 1 {
                event.kv.value = Data(repeating: UInt8(index), count: index * 200)
                event.kv.createRevision = 7
                event.kv.version = Int64(index + 1)
                event.kv.lease = index == 2 ? 0x1234 : 0
            }
            events.append(event)
        }
        let encoded = WatchWire.encode(events)
        for (watchID, revision, cluster) in [(Int64(0), Int64(300), UInt64(0)), (5, 1, 0xcdf8_1819_4e3a_8c32), (-1, 0, 1), (Int64.max, Int64.max, .max)] {
            var header = Etcdserverpb_ResponseHeader()
            header.clusterID = cluster
            header.memberID = 0x8e9e_05c5_2164_694d
            header.revision = revision
            header.raftTerm = 2
            var message = Etcdserverpb_WatchResponse()
            message.header = header
            message.watchID = watchID
            message.events = events
            let expected: [UInt8] = try message.serializedBytes()
            let wire = try WatchWire.events(header: header, watchID: watchID, encodedEvents: encoded).serialized()
            #expect(wire == expected, "watch \(watchID) at \(revision)")
            #expect(try Etcdserverpb_WatchResponse(serializedBytes: wire) == message)
        }
        let empty = try WatchWire.events(header: Etcdserverpb_ResponseHeader(), watchID: 0, encodedEvents: []).serialized()
        #expect(empty == (try Etcdserverpb_WatchResponse().serializedBytes() as [UInt8]))
    }

    @Test("fragments: large responses split under the limit, at least one event each, all but the last marked")
    func fragments() throws {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = 3
        response.header.revision = 9
        for index in 0..<10 {
            var event = Mvccpb_Event()
            event.kv.key = Data("key\(index)".utf8)
            event.kv.value = Data(repeating: 0x61, count: index == 4 ? 500 : 100)
            response.events.append(event)
        }
        let limit = 350
        let parts = WatchService.fragments(of: response, limit: limit)
        #expect(parts.count > 1)
        #expect(parts.flatMap(\.events) == response.events)
        #expect(parts.dropLast().allSatisfy(\.fragment) && !parts.last!.fragment)
        for part in parts {
            let size = (try part.serializedBytes() as [UInt8]).count
            #expect(size < limit || part.events.count == 1, "a fragment of \(size) bytes with \(part.events.count) events")
            #expect(part.watchID == 3 && part.header.revision == 9)
        }
        #expect(WatchService.fragments(of: response, limit: 1 << 20) == [response])
    }
}
