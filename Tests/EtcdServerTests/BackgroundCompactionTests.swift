import EtcdAPI
import EtcdBackend
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// etcd's compaction on a running member: the compaction revision holds as soon as the request
/// is answered, while the rows go afterwards in bounded, paced batches, so writes and reads go
/// on meanwhile; a `physical` compaction is answered once its rows are gone.
@Suite("Compaction in the background")
struct BackgroundCompactionTests {
    static let keys = 100
    static let versions = 30

    /// Rows in the member's backend as another connection sees them (what has been committed).
    private func committedRows(_ directory: String) throws -> Int64 {
        let backend = try Backend(path: Backend.databasePath(dataDirectory: directory))
        return try backend.withStatement("SELECT count(*) FROM kv") { (statement) throws(BackendError) in
            _ = try statement.step()
            return statement.int64(at: 0)
        }
    }

    @Test("a compaction is answered at once; writes and reads go on while its rows are deleted in batches; physical waits for them")
    func background() async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("etcd-compaction-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withServer(dataDirectory: directory, configure: { configuration in
            // 2,900 rows to delete in batches of 100 with 50 ms between them: at least 1.4 s.
            configuration.compactionBatchLimit = 100
            configuration.compactionSleepInterval = .milliseconds(50)
        }) { port in
            try await withKVClient(port: port) { kv, _ in
                var revision: Int64 = 0
                for version in 0..<Self.versions {
                    var txn = Etcdserverpb_TxnRequest()
                    txn.success = (0..<Self.keys).map { key in
                        var op = Etcdserverpb_RequestOp()
                        op.requestPut.key = Data("key-\(key)".utf8)
                        op.requestPut.value = Data("\(version)".utf8)
                        return op
                    }
                    revision = try await kv.txn(txn).header.revision
                }
                var compaction = Etcdserverpb_CompactionRequest()
                compaction.revision = revision
                _ = try await kv.compact(compaction)

                // Answered, and the compaction holds: older revisions are gone for reads.
                var old = Etcdserverpb_RangeRequest()
                old.key = Data("key-0".utf8)
                old.revision = revision - 1
                let refused = await #expect(throws: RPCError.self) { _ = try await kv.range(old) }
                #expect(refused?.message == "etcdserver: mvcc: required revision has been compacted")
                // The member serves writes and reads while the rows are still being deleted.
                var put = Etcdserverpb_PutRequest()
                put.key = Data("after".utf8)
                put.value = Data("1".utf8)
                let afterRevision = try await kv.put(put).header.revision
                var get = Etcdserverpb_RangeRequest()
                get.key = Data("after".utf8)
                #expect(try await kv.range(get).kvs.first?.modRevision == afterRevision)
                let rowsMeanwhile = try committedRows(directory)
                #expect(rowsMeanwhile > Int64(Self.keys + 1), "rows were deleted in the apply step itself")

                // A physical compaction is answered only once its rows are deleted (and they are
                // committed with the next backend batch, within its interval).
                compaction.revision = afterRevision
                compaction.physical = true
                _ = try await kv.compact(compaction)
                try await waitUntil {
                    (try? committedRows(directory)) == Int64(Self.keys + 1)
                }
            }
        }
    }
}
