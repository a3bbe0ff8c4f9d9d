import EtcdRaft
@testable import EtcdWAL
import Foundation
import Testing

/// A fresh directory under the system temporary directory, removed when `body` returns.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-wal-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url.path)
}

/// Segments of a few kilobytes, so that tests rotate often and fsync little.
let smallSegments = WALOptions(segmentSizeBytes: 4096)

/// An entry whose payload depends on its index and term, so a mix-up shows.
func entry(_ index: UInt64, term: UInt64 = 1, size: Int = 16) -> Entry {
    Entry(term: term, index: index, data: (0..<size).map {
        UInt8(truncatingIfNeeded: Int(truncatingIfNeeded: index) &* 31 &+ $0 &+ Int(truncatingIfNeeded: term))
    })
}

let testMetadata = Array("member=1 cluster=2".utf8)

func segmentNames(in directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
}

func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
