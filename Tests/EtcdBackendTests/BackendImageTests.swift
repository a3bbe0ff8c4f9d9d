import EtcdBackend
import Foundation
import Synchronization
import Testing

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "swift-etcd-image-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func scalar(_ backend: Backend, _ sql: String) throws -> Int64 {
    try backend.withStatement(sql) { statement throws(BackendError) in
        _ = try statement.step()
        return statement.int64(at: 0)
    }
}

/// Appends `rows` rows and bumps the batch counter in one transaction: a committed state always
/// has `count(*) == batches * rows`.
private func commitBatch(_ backend: Backend, batch: Int64, rows: Int64, commit: Bool = true) throws {
    try backend.begin()
    for row in 0..<rows {
        try backend.withStatement("INSERT INTO t (id, data) VALUES (?1, ?2)") { statement throws(BackendError) in
            try statement.bind(batch * rows + row, at: 1)
            try statement.bind([UInt8](repeating: UInt8(truncatingIfNeeded: row), count: 512), at: 2)
            try statement.run()
        }
    }
    try backend.withStatement("UPDATE counter SET batches = ?1") { statement throws(BackendError) in
        try statement.bind(batch + 1, at: 1)
        try statement.run()
    }
    if commit { try backend.commit() }
}

private func makeDatabase(_ directory: String, automaticCheckpoints: Bool = false) throws -> Backend {
    let backend = try Backend(dataDirectory: directory, automaticCheckpoints: automaticCheckpoints)
    try backend.execute("""
        CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB);
        CREATE TABLE counter (batches INTEGER NOT NULL);
        INSERT INTO counter (batches) VALUES (0);
        """)
    return backend
}

@Suite("Backend: consistent images")
struct BackendImageTests {
    @Test("an image holds the last commit, never the open transaction, and replaces its name atomically")
    func uncommittedExcluded() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let backend = try makeDatabase(root + "/a")
        try commitBatch(backend, batch: 0, rows: 100)
        try commitBatch(backend, batch: 1, rows: 100, commit: false)  // open, uncommitted
        let imagePath = root + "/image.db"
        let size = try backend.writeImage(to: imagePath)
        #expect(size > 100 * 512)
        #expect(!FileManager.default.fileExists(atPath: imagePath + ".tmp"))
        backend.rollback()

        let image = try Backend(path: imagePath)
        #expect(try scalar(image, "SELECT count(*) FROM t") == 100)
        #expect(try scalar(image, "SELECT batches FROM counter") == 1)
        #expect(try scalar(image, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'") == 1)

        // A second image over the first: the name now holds the newer state.
        try commitBatch(backend, batch: 1, rows: 100)
        try backend.writeImage(to: imagePath)
        let newer = try Backend(path: imagePath)
        #expect(try scalar(newer, "SELECT count(*) FROM t") == 200)
    }

    @Test("an image taken while another connection commits is one committed state, and the writer is not held up")
    func concurrentWriter() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = root + "/a"
        _ = try makeDatabase(directory)
        let committed = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)
        let writer = Thread {
            do {
                let backend = try Backend(dataDirectory: directory, automaticCheckpoints: true)
                var batch: Int64 = 0
                while !stop.load(ordering: .acquiring), batch < 5_000 {
                    try commitBatch(backend, batch: batch, rows: 50)
                    batch += 1
                    committed.store(Int(batch), ordering: .releasing)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            stop.store(true, ordering: .releasing)
        }
        writer.start()
        defer { stop.store(true, ordering: .releasing) }
        let deadline = ContinuousClock.now + .seconds(10)
        while committed.load(ordering: .acquiring) < 20, ContinuousClock.now < deadline, !stop.load(ordering: .acquiring) {
            Thread.sleep(forTimeInterval: 0.001)
        }
        var images: [(batches: Int64, rows: Int64)] = []
        var progressDuringImages = 0
        for round in 0..<3 {
            let before = committed.load(ordering: .acquiring)
            let path = root + "/image-\(round).db"
            try BackendImage.write(databaseAt: Backend.databasePath(dataDirectory: directory), to: path)
            progressDuringImages += committed.load(ordering: .acquiring) - before
            let image = try Backend(path: path)
            images.append((try scalar(image, "SELECT batches FROM counter"), try scalar(image, "SELECT count(*) FROM t")))
        }
        stop.store(true, ordering: .releasing)
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        #expect(failure.withLock { $0 } == nil)
        for image in images {
            #expect(image.batches >= 20)
            #expect(image.rows == image.batches * 50, "the image mixes two commits")
        }
        // Images are not free, so some writes land while they are taken: the writer was never blocked.
        #expect(progressDuringImages > 0)
    }

    @Test("an in-memory backend has no image; a missing database is an error, not an empty image")
    func failures() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(throws: BackendError.self) { try Backend(path: nil).writeImage(to: root + "/x.db") }
        #expect(throws: BackendError.self) { try BackendImage.write(databaseAt: root + "/none.db", to: root + "/y.db") }
        #expect(!FileManager.default.fileExists(atPath: root + "/y.db"))
        #expect(!FileManager.default.fileExists(atPath: root + "/y.db.tmp"))
    }
}
