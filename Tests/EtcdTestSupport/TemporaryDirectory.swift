public import Foundation

/// A directory under the system's temporary directory that belongs to one test and is removed by
/// ``remove()`` or at the end of ``withTemporaryDirectory(prefix:_:)``.
public struct TemporaryDirectory: Sendable {
    /// The directory's location; it exists until ``remove()`` is called.
    public let url: URL

    /// The directory's path as a string, for command-line flags.
    public var path: String { url.path }

    /// Creates a fresh, empty directory whose name starts with `prefix`.
    public init(prefix: String = "swift-etcd-test") throws {
        let base = FileManager.default.temporaryDirectory
        let url = base.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        self.url = url
    }

    /// A path inside the directory (not created).
    public func appending(_ component: String) -> URL {
        url.appendingPathComponent(component)
    }

    /// Removes the directory and everything in it; a directory that is already gone is not an error.
    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs `body` with a fresh temporary directory and removes the directory afterwards, whether
/// `body` returns or throws.
public func withTemporaryDirectory<Result>(
    prefix: String = "swift-etcd-test",
    _ body: (TemporaryDirectory) async throws -> Result
) async throws -> Result {
    let directory = try TemporaryDirectory(prefix: prefix)
    defer { directory.remove() }
    return try await body(directory)
}
