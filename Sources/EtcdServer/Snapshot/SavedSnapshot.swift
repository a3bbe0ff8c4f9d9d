import Crypto
import EtcdBackend
import EtcdMVCC
import EtcdReplica
import Foundation
public import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written by `etcdctl snapshot save` from a swift-etcd member: the backend's database
/// image, then (normally) the SHA-256 of the image. What etcdutl's `snapshot status` and
/// `snapshot restore` do with etcd's files, done for ours.
public struct SavedSnapshot: Sendable {
    public let path: String
    /// Bytes of the database image (the file less its hash, if it has one).
    public let databaseBytes: Int64
    /// Whether the file ends with the image's SHA-256. A database image is whole pages, so a
    /// file that is 32 bytes longer than a whole number of pages carries one (as etcd tells by
    /// its page size).
    public let hasHash: Bool

    static let hashBytes = 32
    static let pageBytes: Int64 = 4_096

    /// Why a snapshot file cannot be used.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String) throws(Failure) {
        self.path = path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = (attributes[.size] as? NSNumber)?.int64Value
        else {
            throw Failure(description: "open \(path): no such file or directory")
        }
        hasHash = size % Self.pageBytes == Int64(Self.hashBytes)
        databaseBytes = hasHash ? size - Int64(Self.hashBytes) : size
        guard databaseBytes > 0, databaseBytes % Self.pageBytes == 0 else {
            throw Failure(description: "\(path) is not a swift-etcd snapshot (\(size) bytes is not whole database pages)")
        }
    }

    /// Checks the trailing hash against the image: etcd's "expected sha256 ..., got ..." when
    /// they differ; a file without a hash passes only when `skipHashCheck` (a copy of a member's
    /// database file rather than a saved snapshot), as in etcd.
    public func verify(skipHashCheck: Bool) throws(Failure) {
        if skipHashCheck { return }
        guard hasHash else { throw Failure(description: "snapshot missing hash but --skip-hash-check=false") }
        guard let file = FileHandle(forReadingAtPath: path) else { throw Failure(description: "open \(path): cannot read") }
        defer { try? file.close() }
        var digest = SHA256()
        var left = databaseBytes
        while left > 0 {
            guard let piece = try? file.read(upToCount: Int(min(left, 1 << 20))), !piece.isEmpty else {
                throw Failure(description: "\(path): read failed")
            }
            digest.update(data: piece)
            left -= Int64(piece.count)
        }
        let expected = (try? file.read(upToCount: Self.hashBytes)) ?? Data()
        let computed = Data(digest.finalize())
        guard expected == computed else {
            throw Failure(description: "expected sha256 \(Array(expected)), got \(Array(computed))")
        }
    }

    /// Copies the image (without the hash) to `destination`, synced, through a temporary name.
    func copyImage(to destination: String) throws(Failure) {
        let temporary = destination + ".tmp"
        unlink(temporary)
        guard let source = FileHandle(forReadingAtPath: path) else { throw Failure(description: "open \(path): cannot read") }
        defer { try? source.close() }
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
            let target = FileHandle(forWritingAtPath: temporary)
        else {
            throw Failure(description: "create \(temporary): cannot write")
        }
        do {
            var left = databaseBytes
            while left > 0 {
                guard let piece = try source.read(upToCount: Int(min(left, 1 << 20))), !piece.isEmpty else {
                    throw Failure(description: "\(path): ended early")
                }
                try target.write(contentsOf: piece)
                left -= Int64(piece.count)
            }
            try target.synchronize()
            try target.close()
        } catch let failure as Failure {
            unlink(temporary)
            throw failure
        } catch {
            unlink(temporary)
            throw Failure(description: "copy to \(temporary): \(error)")
        }
        do {
            try ImageFile.rename(temporary, to: destination, syncingDirectory: true)
        } catch {
            throw Failure(description: "\(error)")
        }
    }

    /// What `etcdutl snapshot status` reports: a checksum of the keyspace history (over every
    /// stored revision, in etcd's row bytes, see ``MVCCStore/hashAllRows()``), the latest
    /// revision, how many revisions are stored (etcd counts its key bucket's rows) and the size.
    public struct Status: Codable, Sendable, Equatable {
        public var hash: UInt32
        public var revision: Int64
        public var totalKey: Int
        public var totalSize: Int64
    }

    public func status() throws(Failure) -> Status {
        let scratch = NSTemporaryDirectory() + "/swift-etcd-status-\(UInt64.random(in: 1 ... .max)).db"
        try copyImage(to: scratch)
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(scratch + suffix) }
        }
        do {
            let store = try MVCCStore(backend: Backend(path: scratch))
            let hash = try store.hashAllRows()
            return Status(
                hash: hash.hash, revision: store.currentRevision, totalKey: try store.storedRowCount(),
                totalSize: databaseBytes)
        } catch {
            throw Failure(description: "\(path): not a readable swift-etcd snapshot: \(error)")
        }
    }

    /// etcdutl's `snapshot restore`: a new data directory for a member of a new cluster, holding
    /// the snapshot's keys (at their revisions) and leases. The member's and the cluster's IDs
    /// and the membership come from the flags when the member first starts, exactly as for a new
    /// cluster, so every member restored from one file with the same `--initial-cluster` and
    /// `--initial-cluster-token` forms one cluster. Refuses a data directory that exists.
    public func restore(into configuration: ServerConfiguration, skipHashCheck: Bool, logger: Logger) throws {
        // The flags must describe this member in the new cluster, as the server will check.
        let identity = try MemberIdentity.resolve(configuration)
        try verify(skipHashCheck: skipHashCheck)
        let dataDirectory = configuration.effectiveDataDirectory
        guard !FileManager.default.fileExists(atPath: dataDirectory) else {
            throw Failure(description: "data-dir \"\(dataDirectory)\" exists")
        }
        let databasePath = Backend.databasePath(dataDirectory: dataDirectory)
        try FileManager.default.createDirectory(
            atPath: (databasePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try copyImage(to: databasePath)
        let replica = try Replica(store: MVCCStore(backend: Backend(dataDirectory: dataDirectory)), logger: logger)
        try replica.startNewCluster(forgetting: Replica.identityMetaKeys)
        logger.info(
            "restored snapshot",
            metadata: [
                "path": "\(path)", "data-dir": "\(dataDirectory)", "revision": "\(replica.store.currentRevision)",
                "cluster-id": "\(identity.cluster)", "local-member-id": "\(identity.member)",
            ])
    }
}
