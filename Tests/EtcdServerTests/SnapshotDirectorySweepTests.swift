import EtcdAPI
import Foundation
import Logging
import Testing

@testable import EtcdServer

/// What a crash or an install leaves in `member/snap` is removed at member start; an image that
/// startup recovery may still install stays.
@Suite("Snapshot directory sweep")
struct SnapshotDirectorySweepTests {
    static func image(term: UInt64, index: UInt64) -> String { PeerSnapshotStream.fileName(term: term, index: index) }

    @Test("temporary and outgoing files and images at or below the applied index go; newer images and other files stay")
    func sweep() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("snap-sweep-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stale = [
            Self.image(term: 2, index: 40) + ".tmp",  // a receiver stopped mid-transfer
            Self.image(term: 3, index: 900) + ".tmp",  // even one above the applied index
            "outgoing-12345.db", "outgoing-678.db.tmp",  // a sender's copies
            Self.image(term: 2, index: 40), Self.image(term: 2, index: 40) + "-wal",  // below the applied index
            Self.image(term: 2, index: 100),  // installed already: applied == its index
        ]
        let kept = [
            Self.image(term: 3, index: 101),  // may be the snapshot Raft saved and has not installed yet
            "0000000000000003-0000000000000065.snap",  // Raft's own snapshot file
            "0000000000000003-0000000000000065.snap.broken", "notes.txt", "x.snap.db.tmp",
        ]
        for name in stale + kept {
            #expect(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data("x".utf8)))
        }
        var logger = Logger(label: "etcd.test")
        logger.logLevel = .critical
        let removed = SnapshotDirectorySweep.sweep(directory: directory, appliedIndex: 100, logger: logger)
        #expect(removed == stale.sorted())
        let left = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(left.sorted() == kept.sorted())
        // A directory that does not exist (a member that never received a snapshot) is fine.
        #expect(SnapshotDirectorySweep.sweep(directory: directory + "/none", appliedIndex: 1, logger: logger).isEmpty)
    }

    @Test("a restarted member removes the leftovers in its snapshot directory")
    func atStart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("snap-sweep-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withServer(dataDirectory: directory) { port in
            try await withKVClient(port: port) { kv, _ in
                var put = Etcdserverpb_PutRequest()
                put.key = Data("k")
                put.value = Data("v")
                _ = try await kv.put(put)
            }
        }
        let snap = directory + "/member/snap"
        try FileManager.default.createDirectory(atPath: snap, withIntermediateDirectories: true)
        let leftovers = [Self.image(term: 2, index: 7) + ".tmp", "outgoing-99.db", Self.image(term: 1, index: 1)]
        let future = Self.image(term: 9, index: 1 << 40)
        for name in leftovers + [future] {
            #expect(FileManager.default.createFile(atPath: snap + "/" + name, contents: Data("x".utf8)))
        }
        try await withServer(dataDirectory: directory) { port in
            try await withKVClient(port: port) { kv, _ in
                var get = Etcdserverpb_RangeRequest()
                get.key = Data("k")
                let values = try await kv.range(get).kvs.map(\.value)
                #expect(values == [Data("v")])
            }
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: snap)
        #expect(leftovers.allSatisfy { !left.contains($0) }, "\(left)")
        #expect(left.contains(future))
    }
}
