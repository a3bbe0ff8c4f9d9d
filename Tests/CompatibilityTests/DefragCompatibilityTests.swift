import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import Synchronization
import Testing

/// `etcdctl defrag`: what it prints, that the database shrinks, and (on swift-etcd, whose
/// defragmentation runs in steps between applies) that writes and reads go on while it runs.
@Suite("Defragmentation")
struct DefragCompatibilityTests {
    /// `dbSize` from `endpoint status`.
    static func databaseSize(_ side: CompatibilitySession) async throws -> Int64 {
        let status = try await side.etcdctl(["endpoint", "status", "-w", "json"], record: false)
        let size = try JSONValue(parsing: status.standardOutput)[0]?["Status"]?["dbSize"]?.integerValue
        return size.map { Int64($0) } ?? -1
    }

    @Test("defrag prints etcd's line, shrinks the database after deletions and compaction, and changes no data (HashKV)")
    func shrinks() async throws {
        let value = String(repeating: "x", count: 10_000)
        try await expectCompatible("defrag", referenceMentions: ["Finished defragmenting etcd member"]) { side in
            for index in 0..<150 {
                try await side.etcdctl(["put", "k\(index)"], standardInput: value, record: false)
            }
            try await side.etcdctl("del", "k1", "--prefix")
            try await side.etcdctl("compact", "150", "--physical")
            let hashBefore = try await side.etcdctl(["endpoint", "hashkv", "-w", "json"], record: false)
            let before = try await Self.databaseSize(side)
            try await side.etcdctl("defrag")
            let after = try await Self.databaseSize(side)
            side.record("dbSize shrank by more than 500 kB", .text("\(before - after > 500_000)"))
            let hashAfter = try await side.etcdctl(["endpoint", "hashkv", "-w", "json"], record: false)
            side.record("HashKV unchanged by defrag", .text("\(hashBefore.standardOutput == hashAfter.standardOutput)"))
            try await side.etcdctl("get", "k0", "--print-value-only", "-w", "json")
            try await side.etcdctl("get", "k", "--prefix", "--keys-only", "--limit=3")
            // Defragmenting a database with nothing to give back is quick and harmless.
            try await side.etcdctl("defrag")
            try await side.etcdctl("put", "after", "1")
        }
    }

    @Test("writes and reads go on while swift-etcd defragments a fragmented database; nothing is lost")
    func writesDuringDefrag() async throws {
        try await withEtcd(.candidate) { server in
            try await server.withGRPCClient { client in
                // About 40 MB of rows, then most deleted and compacted away: thousands of free pages.
                let value = Data(repeating: 7, count: 4_000)
                for batch in 0..<100 {
                    var txn = Etcdserverpb_TxnRequest()
                    txn.success = (0..<100).map { index in
                        var operation = Etcdserverpb_RequestOp()
                        operation.requestPut.key = Data("fill\(batch * 100 + index)".utf8)
                        operation.requestPut.value = value
                        return operation
                    }
                    _ = try await client.kv.txn(txn)
                }
                var delete = Etcdserverpb_DeleteRangeRequest()
                delete.key = Data("fill".utf8)
                delete.rangeEnd = Data("film".utf8)
                let deleted = try await client.kv.deleteRange(delete)
                var compaction = Etcdserverpb_CompactionRequest()
                compaction.revision = deleted.header.revision
                compaction.physical = true
                _ = try await client.kv.compact(compaction)
                let sizeBefore = try await client.maintenance.status(Etcdserverpb_StatusRequest()).dbSize

                // A writer runs before, during and after the defragmentation.
                let finished = FinishedFlag()
                let defragmenting = Task {
                    defer { finished.set() }
                    try await Task.sleep(for: .milliseconds(200))
                    let started = ContinuousClock.now
                    _ = try await client.maintenance.defragment(Etcdserverpb_DefragmentRequest())
                    return started.duration(to: .now)
                }
                var written: [(String, Int64)] = []
                var slowest = Duration.zero
                let deadline = ContinuousClock.now.advanced(by: .seconds(30))
                var index = 0
                while ContinuousClock.now < deadline {
                    var put = Etcdserverpb_PutRequest()
                    put.key = Data("during\(index)".utf8)
                    put.value = Data("\(index)".utf8)
                    let started = ContinuousClock.now
                    let response = try await client.kv.put(put)
                    slowest = max(slowest, started.duration(to: .now))
                    written.append(("during\(index)", response.header.revision))
                    index += 1
                    if index > 50, finished.isSet { break }
                }
                let took = try await defragmenting.value
                let sizeAfter = try await client.maintenance.status(Etcdserverpb_StatusRequest()).dbSize
                print("defrag took \(took), \(written.count) puts meanwhile, slowest \(slowest); dbSize \(sizeBefore) -> \(sizeAfter)")
                #expect(sizeAfter < sizeBefore / 4, "dbSize \(sizeBefore) -> \(sizeAfter)")
                #expect(written.count > 50)
                // Every acknowledged write is there, at the revision it was acknowledged with.
                var range = Etcdserverpb_RangeRequest()
                range.key = Data("during".utf8)
                range.rangeEnd = Data("durinh".utf8)
                let stored = try await client.kv.range(range)
                let byKey = Dictionary(uniqueKeysWithValues: stored.kvs.map { (String(decoding: $0.key, as: UTF8.self), $0.modRevision) })
                #expect(written.allSatisfy { byKey[$0.0] == $0.1 }, "\(written.count) written, \(byKey.count) stored")
            }
        }
    }
}

/// Set once by one task, read by another.
private final class FinishedFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
