import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Removes what a crash or a finished install leaves in `member/snap` and nothing will use again,
/// as etcd's snapshotter does at start (`cleanupSnapdir` removes orphaned temporary databases)
/// and after each saved snapshot (`ReleaseSnapDBs` removes `.snap.db` images below it).
///
/// Run at member start, after the Raft log is open (and any image it needed installed, see
/// `EtcdServer.openRaftMember`) and before peers can send snapshots, so no receiver or sender
/// is writing here. It removes:
/// - `<term>-<index>.snap.db.tmp`: a receiver stopped mid-transfer; the leader sends again.
/// - `outgoing-<n>.db` and its `.tmp`: a copy made to send to a peer, deleted once sent.
/// - `<term>-<index>.snap.db` with `index` at or below the backend's applied index, and the
///   image's SQLite `-wal`/`-shm` files. Such an image can never be installed: an install needs
///   an image for a Raft snapshot above the applied index (Raft offers none at or below what a
///   member has), and the applied index only grows. An image above the applied index may be the
///   one for a snapshot Raft saved and has not installed yet; startup recovery installs it, so it
///   stays (as etcd keeps the image at the snapshot's index).
/// Other files are left alone. A removal that fails is logged and skipped: the files only take space.
enum SnapshotDirectorySweep {
    /// Sweeps `directory` for a member whose backend has applied up to `appliedIndex`; returns
    /// the names removed, sorted.
    @discardableResult
    static func sweep(directory: String, appliedIndex: UInt64, logger: Logger) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        let present = Set(names)
        var removed: [String] = []
        for name in names.sorted() {
            guard let reason = staleReason(name, appliedIndex: appliedIndex) else { continue }
            let path = directory + "/" + name
            guard unlink(path) == 0 || errno == ENOENT else {
                logger.warning(
                    "failed to remove a stale snapshot file",
                    metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
                continue
            }
            logger.info("removed a stale snapshot file", metadata: ["path": "\(path)", "reason": "\(reason)"])
            removed.append(name)
            for suffix in ["-wal", "-shm"] where present.contains(name + suffix) && name.hasSuffix(imageSuffix) {
                if unlink(path + suffix) == 0 { removed.append(name + suffix) }
            }
        }
        return removed.sorted()
    }

    private static let imageSuffix = ".snap.db"

    /// Why `name` is stale, or nil if it must stay.
    static func staleReason(_ name: String, appliedIndex: UInt64) -> String? {
        if name.hasSuffix(imageSuffix + ".tmp"), imageIndex(String(name.dropLast(4))) != nil {
            return "left by a snapshot transfer that did not finish"
        }
        if name.hasPrefix("outgoing-"), name.hasSuffix(".db") || name.hasSuffix(".db.tmp") {
            return "a copy made to send a snapshot to a peer"
        }
        if let index = imageIndex(name), index <= appliedIndex {
            return "image at index \(index), at or below the applied index \(appliedIndex)"
        }
        return nil
    }

    /// The Raft index in an image's name (`<16 hex term>-<16 hex index>.snap.db`), or nil if
    /// `name` is not one.
    static func imageIndex(_ name: String) -> UInt64? {
        guard name.hasSuffix(imageSuffix) else { return nil }
        let parts = name.dropLast(imageSuffix.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 16 }), UInt64(parts[0], radix: 16) != nil else { return nil }
        return UInt64(parts[1], radix: 16)
    }
}
