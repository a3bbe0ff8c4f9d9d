public import Foundation

/// Which server implementation a test runs: real etcd or swift-etcd.
public enum ServerFlavor: String, Sendable, Hashable, CustomStringConvertible {
    /// The installed etcd (`/usr/bin/etcd`, or env `REAL_ETCD_BINARY`), the reference.
    case realEtcd = "real etcd"
    /// swift-etcd's `etcd` product, built next to the test bundle (or env `SWIFT_ETCD_BINARY`).
    case swiftEtcd = "swift-etcd"

    public var description: String { rawValue }

    /// The flavor compared against real etcd. It is swift-etcd, unless env `COMPAT_BOTH_REAL=1`
    /// asks for real etcd on both sides to debug the harness itself.
    public static var candidate: ServerFlavor {
        ProcessInfo.processInfo.environment["COMPAT_BOTH_REAL"] == "1" ? .realEtcd : .swiftEtcd
    }

    /// The server executable for this flavor.
    ///
    /// - Throws: ``EtcdTestSupportError/binaryNotFound(_:)`` when it does not exist, with the
    ///   places searched and how to fix it; tests fail with that message rather than skip.
    public func executable() throws(EtcdTestSupportError) -> URL {
        let environment = ProcessInfo.processInfo.environment
        switch self {
        case .realEtcd:
            let path = environment["REAL_ETCD_BINARY"] ?? "/usr/bin/etcd"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw .binaryNotFound("real etcd not found at \(path) (install etcd 3.4 or set REAL_ETCD_BINARY)")
            }
            return URL(fileURLWithPath: path)
        case .swiftEtcd:
            if let path = environment["SWIFT_ETCD_BINARY"] {
                guard FileManager.default.isExecutableFile(atPath: path) else {
                    throw .binaryNotFound("SWIFT_ETCD_BINARY=\(path) is not an executable file")
                }
                return URL(fileURLWithPath: path)
            }
            let candidates = Self.buildDirectories().map { $0.appendingPathComponent("etcd") }
            if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) {
                return found
            }
            throw .binaryNotFound(
                "swift-etcd's server binary was not found (looked at "
                    + candidates.map(\.path).joined(separator: ", ")
                    + "). Build it with `swift build --product etcd`, set SWIFT_ETCD_BINARY, "
                    + "or set COMPAT_BOTH_REAL=1 to run real etcd on both sides."
            )
        }
    }

    /// The directories the test bundle runs from: SwiftPM puts the products of one build, the
    /// `etcd` executable among them, in the same directory as the test bundle.
    public static func buildDirectories() -> [URL] {
        var directories: [URL] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(Self.productsDirectory(containing: URL(fileURLWithPath: executable)))
        }
        if let argument = CommandLine.arguments.first, argument.contains("/") {
            directories.append(Self.productsDirectory(containing: URL(fileURLWithPath: argument)))
        }
        #if canImport(Darwin)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        #endif
        var seen = Set<String>()
        return directories.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }

    /// The products directory for an executable: the nearest enclosing directory that is not
    /// inside an `.xctest` bundle.
    private static func productsDirectory(containing executable: URL) -> URL {
        var directory = executable.deletingLastPathComponent()
        while directory.path.contains(".xctest") && directory.path != "/" {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }
}

/// Errors of the test support library, each with a message meant for the test log.
public enum EtcdTestSupportError: Error, CustomStringConvertible {
    /// A server or tool binary is missing.
    case binaryNotFound(String)
    /// A server did not become healthy, or exited, while starting.
    case serverDidNotStart(String)
    /// A child process did not finish within its time limit.
    case timedOut(String)

    public var description: String {
        switch self {
        case .binaryNotFound(let message): return message
        case .serverDidNotStart(let message): return message
        case .timedOut(let message): return message
        }
    }
}
