import Crypto
import EtcdAPI
import EtcdBackend
import Foundation
import GRPCCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// etcd's Maintenance.Snapshot: the backend as one consistent image, streamed in 32 KiB pieces
/// with the bytes left after each, then one last message holding the SHA-256 of everything sent
/// (what `etcdutl snapshot restore` checks the file against).
///
/// The image is copied first by a read-only connection of its own (see ``BackendImage``), so
/// writers are never held up, neither while it is copied nor while a slow client reads it.
struct SnapshotStreamer: Sendable {
    /// Where the backend's database is, and where the copy goes (`member/snap`, whose sweep at
    /// start removes a copy a crash left behind: its name starts with `outgoing-`).
    let databasePath: String
    let snapshotDirectory: String

    /// etcd sends its snapshot in pieces of this size.
    static let pieceBytes = 32 * 1024

    func stream(to response: RPCWriter<Etcdserverpb_SnapshotResponse>) async throws {
        let path = snapshotDirectory + "/outgoing-client-\(UInt64.random(in: 1 ... .max)).db"
        defer { unlink(path) }
        // The copy is blocking file work on the thread pool the peer snapshot sender uses too,
        // not on one of the few threads every task shares.
        try await NIOThreadPool.singleton.runIfActive { [databasePath, snapshotDirectory] in
            // A member that has not saved a Raft snapshot yet has no snapshot directory.
            try FileManager.default.createDirectory(atPath: snapshotDirectory, withIntermediateDirectories: true)
            // A copy deleted once sent: not worth an fsync.
            _ = try BackendImage.write(databaseAt: databasePath, to: path, syncs: false)
        }
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw RPCError(code: .internalError, message: "etcdserver: cannot read the snapshot copy at \(path)")
        }
        defer { try? file.close() }
        let total = try file.seekToEnd()
        try file.seek(toOffset: 0)
        var digest = SHA256()
        var sent: UInt64 = 0
        while sent < total {
            let piece = try file.read(upToCount: Self.pieceBytes) ?? Data()
            guard !piece.isEmpty else {
                throw RPCError(code: .internalError, message: "etcdserver: the snapshot copy ended early at \(sent) of \(total) bytes")
            }
            sent += UInt64(piece.count)
            digest.update(data: piece)
            var message = Etcdserverpb_SnapshotResponse()
            message.remainingBytes = total - sent
            message.blob = piece
            try await response.write(message)
        }
        var trailer = Etcdserverpb_SnapshotResponse()
        trailer.blob = Data(digest.finalize())
        try await response.write(trailer)
    }
}
