import EtcdBackend
import Foundation
import Testing

@testable import EtcdMVCC

/// A small deterministic generator (SplitMix64) so randomized tests replay from a printed seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The seed from the `SEED` environment variable, or a fresh one; printed either way.
    static func fromEnvironment(_ test: String) -> (SeededGenerator, UInt64) {
        let seed = ProcessInfo.processInfo.environment["SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        print("\(test): SEED=\(seed)")
        return (SeededGenerator(seed: seed), seed)
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Runs `body` with a fresh directory that is removed afterwards.
func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let path = NSTemporaryDirectory() + "swift-etcd-mvcc-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func openStore(_ directory: String) throws -> MVCCStore {
    try MVCCStore(backend: Backend(dataDirectory: directory))
}

func memoryStore() throws -> MVCCStore {
    try MVCCStore(backend: Backend(path: nil))
}

/// Applies one write transaction in its own batch, as the server does for a single request.
@discardableResult
func apply<Result>(_ store: MVCCStore, _ body: (WriteTransaction) throws -> Result) throws -> Result {
    try store.beginBatch()
    let txn = store.beginWrite()
    let result: Result
    do {
        result = try body(txn)
    } catch {
        txn.end()
        store.abortBatch()
        throw error
    }
    txn.end()
    try store.commitBatch()
    return result
}

func put(_ store: MVCCStore, _ key: String, _ value: String, lease: Int64 = 0) throws {
    try apply(store) { try $0.put(key: bytes(key), value: bytes(value), lease: lease) }
}

@discardableResult
func delete(_ store: MVCCStore, _ range: KeyRange) throws -> Int64 {
    try apply(store) { try $0.deleteRange(range) }
}

func compact(_ store: MVCCStore, _ revision: Int64) throws {
    try store.beginBatch()
    do {
        try store.compact(revision)
    } catch {
        store.abortBatch()
        throw error
    }
    try store.commitBatch()
}

func keys(_ result: RangeResult) -> [String] {
    result.kvs.map { String(decoding: $0.key, as: UTF8.self) }
}

func rowCount(_ store: MVCCStore) throws -> Int64 {
    try store.backend.withStatement("SELECT count(*) FROM kv") { statement throws(BackendError) in
        _ = try statement.step()
        return statement.int64(at: 0)
    }
}

/// Replaces the database file (and any WAL companions) with `contents`, as a torn copy would.
func garbageWrite(_ contents: [UInt8], to path: String) throws {
    for companion in [path, path + "-wal", path + "-shm"] {
        try? FileManager.default.removeItem(atPath: companion)
    }
    try Data(contents).write(to: URL(fileURLWithPath: path))
}
