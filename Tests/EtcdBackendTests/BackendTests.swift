import EtcdBackend
import Foundation
import Testing

private func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let path = NSTemporaryDirectory() + "swift-etcd-backend-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

private func pragma(_ backend: Backend, _ name: String) throws -> String {
    try backend.withStatement("PRAGMA \(name)") { statement throws(BackendError) in
        _ = try statement.step()
        return statement.text(at: 0)
    }
}

private func count(_ backend: Backend, _ table: String) throws -> Int64 {
    try backend.withStatement("SELECT count(*) FROM \(table)") { statement throws(BackendError) in
        _ = try statement.step()
        return statement.int64(at: 0)
    }
}

private func insert(_ backend: Backend, _ id: Int64, _ data: [UInt8]) throws {
    try backend.withStatement("INSERT INTO t (id, data) VALUES (?1, ?2)") { statement throws(BackendError) in
        try statement.bind(id, at: 1)
        try statement.bind(data, at: 2)
        try statement.run()
    }
}

@Suite("Backend: SQLite wrapper")
struct BackendTests {
    @Test("statements bind and read integers, blobs (empty too), text and NULL")
    func roundTrip() throws {
        let backend = try Backend(path: nil)
        try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB, label TEXT)")
        try backend.withStatement("INSERT INTO t (id, data, label) VALUES (?1, ?2, ?3)") { statement throws(BackendError) in
            try statement.bind(Int64.max, at: 1)
            try statement.bind([0, 1, 0xff], at: 2)
            try statement.bind("héllo", at: 3)
            try statement.run()
            #expect(statement.changes == 1)
        }
        try insert(backend, Int64.min, [])
        try backend.withStatement("SELECT id, data, label, typeof(data) FROM t ORDER BY id") { statement throws(BackendError) in
            #expect(try statement.step())
            #expect(statement.int64(at: 0) == Int64.min)
            #expect(statement.bytes(at: 1) == [])
            #expect(statement.text(at: 3) == "blob")  // empty bytes are an empty blob, not NULL
            #expect(statement.isNull(at: 2))
            #expect(try statement.step())
            #expect(statement.int64(at: 0) == Int64.max)
            #expect(statement.bytes(at: 1) == [0, 1, 0xff])
            #expect(statement.text(at: 2) == "héllo")
            #expect(try !statement.step())
        }
    }

    @Test("cached statements are reset between uses")
    func statementReuse() throws {
        let backend = try Backend(path: nil)
        try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
        for id in 0..<10 {
            try insert(backend, Int64(id), [UInt8(id)])
        }
        for id in 0..<10 {
            // Stop after the first row on purpose: the next use must start over.
            let first = try backend.withStatement("SELECT id FROM t WHERE id >= ?1 ORDER BY id") { statement throws(BackendError) in
                try statement.bind(Int64(id), at: 1)
                _ = try statement.step()
                return statement.int64(at: 0)
            }
            #expect(first == Int64(id))
        }
    }

    @Test("rollback discards, commit keeps")
    func transactions() throws {
        let backend = try Backend(path: nil)
        try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
        #expect(!backend.isInTransaction)
        try backend.begin()
        #expect(backend.isInTransaction)
        try insert(backend, 1, [1])
        backend.rollback()
        #expect(!backend.isInTransaction)
        #expect(try count(backend, "t") == 0)
        try backend.begin()
        try insert(backend, 2, [2])
        try backend.commit()
        #expect(try count(backend, "t") == 1)
        backend.rollback()  // nothing open: harmless
    }

    @Test("SQL errors carry SQLite's code, message and the statement")
    func sqlErrors() throws {
        let backend = try Backend(path: nil)
        let error = try #require(throws: BackendError.self) { try backend.execute("SELEC nonsense") }
        #expect(error.message.contains("syntax error"))
        #expect(error.operation.contains("SELEC"))
        #expect(!error.isCorruption)
        try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
        try insert(backend, 1, [])
        let duplicate = try #require(throws: BackendError.self) { try insert(backend, 1, []) }
        #expect(duplicate.code & 0xff == 19)  // SQLITE_CONSTRAINT
        #expect(duplicate.description.contains("UNIQUE"))
    }

    @Test("a data directory gets member/db.sqlite in WAL mode with synchronous=NORMAL, and data persists")
    func dataDirectory() throws {
        try withTemporaryDirectory { root in
            let directory = root + "/not/yet/there"
            do {
                let backend = try Backend(dataDirectory: directory)
                #expect(backend.path == directory + "/member/db.sqlite")
                #expect(try pragma(backend, "journal_mode") == "wal")
                #expect(try pragma(backend, "synchronous") == "1")
                try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
                try backend.begin()
                try insert(backend, 1, [9])
                try backend.commit(durably: true)
                #expect(try pragma(backend, "synchronous") == "1")
            }
            var isDirectory: ObjCBool = false
            #expect(FileManager.default.fileExists(atPath: directory + "/member", isDirectory: &isDirectory))
            #expect(isDirectory.boolValue)
            let reopened = try Backend(dataDirectory: directory)
            #expect(try count(reopened, "t") == 1)
        }
    }

    @Test("a data directory that is a file is a clear error")
    func dataDirectoryIsAFile() throws {
        try withTemporaryDirectory { root in
            let file = root + "/file"
            _ = FileManager.default.createFile(atPath: file, contents: Data([1]))
            let error = try #require(throws: BackendError.self) { _ = try Backend(dataDirectory: file) }
            #expect(error.operation.contains("mkdir"))
        }
    }

    @Test("sizes follow page counts; deleting rows frees pages that stay in the file")
    func sizes() throws {
        try withTemporaryDirectory { directory in
            let backend = try Backend(dataDirectory: directory)
            try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
            let empty = try backend.sizeBytes
            #expect(empty > 0)
            try backend.begin()
            for id in 0..<200 {
                try insert(backend, Int64(id), [UInt8](repeating: 7, count: 4096))
            }
            try backend.commit()
            let full = try backend.sizeBytes
            #expect(full > empty + 200 * 4096)
            #expect(try backend.sizeInUseBytes == full)
            try backend.begin()
            try backend.execute("DELETE FROM t")
            try backend.commit()
            #expect(try backend.sizeBytes == full)
            #expect(try backend.sizeInUseBytes < full / 2)
        }
    }

    @Test("a garbage file is reported as corruption at open, not a crash")
    func garbage() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/member/db.sqlite"
            try FileManager.default.createDirectory(atPath: directory + "/member", withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: path, contents: Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 131) }))
            let error = try #require(throws: BackendError.self) { _ = try Backend(dataDirectory: directory) }
            #expect(error.isCorruption)
            #expect(error.code == 26)  // SQLITE_NOTADB
            #expect(error.operation.contains(path))
        }
    }

    @Test("a database torn after its header fails with a backend error when read")
    func torn() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/member/db.sqlite"
            do {
                let backend = try Backend(dataDirectory: directory)
                try backend.execute("PRAGMA journal_mode=DELETE")  // everything in the main file
                try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
                try backend.begin()
                for id in 0..<100 {
                    try insert(backend, Int64(id), [UInt8](repeating: 1, count: 2000))
                }
                try backend.commit()
            }
            // Keep the header page and scribble over the rest, as a torn copy would.
            var contents = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            for index in 4096..<contents.count {
                contents[index] = UInt8(truncatingIfNeeded: index &* 17)
            }
            try Data(contents).write(to: URL(fileURLWithPath: path))
            let result = Result { () throws -> Int64 in
                let backend = try Backend(dataDirectory: directory)
                return try backend.withStatement("SELECT sum(length(data)) FROM t") { statement throws(BackendError) in
                    _ = try statement.step()
                    return statement.int64(at: 0)
                }
            }
            let error = try #require(throws: BackendError.self) { try result.get() }
            #expect(error.isCorruption, "\(error)")
        }
    }
}

/// The server's arrangement: commits never checkpoint (a checkpoint syncs files, and the commit
/// runs under the lock readers take); a second connection checkpoints outside that lock.
@Suite("Backend: checkpoints by their owner")
struct BackendCheckpointTests {
    private func fileSize(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.size] as? NSNumber)?.intValue ?? -1
    }

    @Test("without automatic checkpoints commits only grow the WAL; the checkpointer moves it into the database")
    func ownerCheckpoints() throws {
        try withTemporaryDirectory { root in
            let backend = try Backend(dataDirectory: root, automaticCheckpoints: false)
            let path = Backend.databasePath(dataDirectory: root)
            try backend.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
            let databaseBefore = try fileSize(path)
            // About 2,000 pages in 20 commits: SQLite alone would have checkpointed at 1,000.
            for batch in 0..<20 {
                try backend.begin()
                for row in 0..<100 { try insert(backend, Int64(batch * 100 + row), [UInt8](repeating: 7, count: 4_000)) }
                try backend.commit()
            }
            #expect(backend.framesInWAL > 1_000)
            #expect(try fileSize(path) == databaseBefore, "a commit checkpointed")

            let checkpointer = try BackendCheckpointer(path: path)
            // A reader on the main connection is not locked out while the checkpointer holds
            // the other connection (SQLite's WAL mode), and sees every commit.
            try checkpointer.checkpointFully()
            #expect(try count(backend, "t") == 2_000)
            #expect(try fileSize(path) > 2_000 * 4_000)
            // With the WAL checkpointed, the next commit starts it over.
            try backend.begin()
            try insert(backend, 5_000, [1])
            try backend.commit()
            #expect(backend.framesInWAL < 10)
            try checkpointer.checkpointPassively()
            let reopened = try Backend(dataDirectory: root)
            #expect(try count(reopened, "t") == 2_001)
        }
    }
}

@Suite("Backend defragmentation")
struct BackendDefragmentationTests {
    /// Fills a table with `rows` rows of 1 kB and deletes every one but the last.
    private static func fragment(_ backend: Backend, rows: Int) throws {
        try backend.execute("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, data BLOB)")
        try backend.begin()
        for id in 0..<rows {
            try backend.withStatement("INSERT INTO filler (id, data) VALUES (?1, ?2)") { statement throws(BackendError) in
                try statement.bind(Int64(id), at: 1)
                try statement.bind([UInt8](repeating: 1, count: 1_000), at: 2)
                try statement.run()
            }
        }
        try backend.execute("DELETE FROM filler WHERE id < \(rows - 1)")
        try backend.commit()
    }

    @Test("a new database releases free pages a bounded number at a time, inside a transaction, and keeps its rows")
    func incremental() throws {
        try withTemporaryDirectory { directory in
            let backend = try Backend(dataDirectory: directory)
            #expect(try backend.releasesPagesIncrementally)
            try Self.fragment(backend, rows: 2_000)
            let free = try backend.freePageCount
            let size = try backend.sizeBytes
            #expect(free > 100)
            try backend.begin()
            let left = try backend.releaseFreePages(limit: 50)
            try backend.commit()
            #expect(left == free - 50)
            #expect(try backend.sizeBytes == size - 50 * 4_096)
            while try backend.releaseFreePages(limit: 500) > 0 {}
            #expect(try backend.freePageCount == 0)
            #expect(try count(backend, "filler") == 1)
        }
    }

    @Test("a database made without incremental release is rewritten once, then releases incrementally")
    func rewriteOldDatabase() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/old.sqlite"
            // What older builds made: auto-vacuum off (turned off here by a rewrite).
            var handle: Backend? = try Backend(path: path)
            try handle?.execute("PRAGMA auto_vacuum=NONE; VACUUM;")
            #expect(try handle?.releasesPagesIncrementally == false)
            handle = nil
            let backend = try Backend(path: path)
            #expect(try !backend.releasesPagesIncrementally)
            try Self.fragment(backend, rows: 1_000)
            #expect(try backend.freePageCount > 100)
            try backend.rewrite()
            #expect(try backend.releasesPagesIncrementally)
            #expect(try backend.freePageCount == 0)
            #expect(try count(backend, "filler") == 1)
        }
    }

    @Test("opening an existing database takes no write lock, so a second connection never stalls the owner's writes")
    func secondConnectionTakesNoWriteLock() throws {
        try withTemporaryDirectory { directory in
            let owner = try Backend(dataDirectory: directory)
            try Self.fragment(owner, rows: 10)
            try owner.begin()
            try owner.execute("INSERT INTO filler (id, data) VALUES (100, x'01')")
            let started = ContinuousClock.now
            let second = try Backend(path: Backend.databasePath(dataDirectory: directory))
            #expect(started.duration(to: .now) < .seconds(5), "the second open waited for the owner's write lock")
            try owner.commit()
            #expect(try count(second, "filler") == 2)
            #expect(try second.releasesPagesIncrementally)
        }
    }
}
