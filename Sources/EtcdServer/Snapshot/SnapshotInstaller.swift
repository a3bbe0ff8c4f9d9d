import EtcdAuth
import EtcdBackend
import EtcdLease
import EtcdMVCC
import EtcdReplica
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a received backend image was not installed. Every case but `.restoreFailed` leaves the
/// member serving its old backend, unchanged.
enum SnapshotInstallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The image is not a backend this member can open: not SQLite, damaged, or without the
    /// tables and consistent index a backend has.
    case invalidImage(String)
    /// The image's applied (consistent) index is below the Raft snapshot's: installing it would
    /// lose entries that Raft considers applied.
    case staleImage(imageIndex: UInt64, snapshotIndex: UInt64)
    /// The member has failed (see ``ReplicaHandle/hasFailed``), or records no identity of its own.
    case memberStopped(String)
    /// Something else still has the old database open (the loop's ``BackendCheckpointer``, or a
    /// reference to the old replica): swapping the file under an open SQLite connection could
    /// lose or mix commits, so nothing was swapped.
    case databaseInUse(String)
    /// The swap failed and was undone: the old backend is back in place and served.
    case swapFailed(String)
    /// The swap failed and the old backend could not be reopened either: the member is marked
    /// failed and must restart.
    case restoreFailed(String)

    var description: String {
        switch self {
        case .invalidImage(let reason): "snapshot image is not a valid backend: \(reason)"
        case .staleImage(let image, let snapshot):
            "snapshot image is at applied index \(image), below the snapshot's index \(snapshot)"
        case .memberStopped(let reason): "cannot install a snapshot: \(reason)"
        case .databaseInUse(let reason): "cannot install a snapshot while the backend is in use: \(reason)"
        case .swapFailed(let reason): "installing the snapshot failed (old backend restored): \(reason)"
        case .restoreFailed(let reason): "installing the snapshot failed and the old backend cannot be reopened: \(reason)"
        }
    }
}

/// What the member serves after an install.
struct InstalledSnapshot: Sendable, Hashable {
    /// The new replica's applied (consistent) index: at or above the snapshot's index; entries up
    /// to it are skipped when Raft hands them to ``Replica/apply(_:)``.
    var appliedIndex: UInt64
    var appliedTerm: UInt64
    /// The store's current and compacted revisions (for the watch hub to catch up from).
    var revision: Int64
    var compactedRevision: Int64
}

/// Replaces a running member's backend with a backend image received from the leader: etcd's
/// `applySnapshot` (which renames the received `snap.db` over the backend file and reopens it).
///
/// The install happens in two parts. First the image is checked on its own, while the member
/// still serves its old backend: it must be an intact SQLite file (`integrity_check`) with a
/// backend's tables, open as a store and a replica, and hold an applied index at or above the
/// snapshot's; this member's own member and cluster IDs are then written into it (the image
/// carries the leader's). Then, under the replica's lock, the old replica is released (closing
/// its connection, which checkpoints and removes the WAL), the old file is kept under a second
/// name with a hard link, the image is renamed over `member/db.sqlite`, and the new replica is
/// opened. Each rename is atomic and the directory is synced after it, so after a crash the
/// database name holds either the whole old backend or the whole new one. If the new one does
/// not open, the old file is renamed back and reopened.
///
/// Readers wait on the lock while the new replica opens (its key index is rebuilt from the
/// rows), as etcd's reads wait for its store's restore.
enum SnapshotInstaller {
    /// Installs the image at `imagePath` (consumed: renamed into place on success, left where it
    /// is otherwise) as the backend of the member whose data directory is `dataDirectory` and
    /// whose replica is behind `handle`, for a Raft snapshot at `snapshotIndex`.
    ///
    /// The caller must (1) have stopped applying and committing through `handle` for the
    /// duration (the Raft loop calls this itself), and (2) have closed every other connection
    /// to the backend file, i.e. released the loop's ``BackendCheckpointer`` (and open a new one
    /// afterwards); otherwise this refuses with `.databaseInUse` and changes nothing. An open
    /// backend batch of the old replica is discarded (the image supersedes it).
    ///
    /// `leases` and `clock` configure the new replica as ``EtcdServer`` configures its own; its
    /// store records changes for the watch hub (`recordsChanges`), as the server's does.
    static func install(
        imagePath: String,
        snapshotIndex: UInt64,
        dataDirectory: String,
        into handle: ReplicaHandle,
        leases: Lessor.Configuration,
        logger: Logger,
        syncs: Bool = true,
        clock: @escaping @Sendable () -> MonotonicTime = Replica.processClock
    ) throws(SnapshotInstallError) -> InstalledSnapshot {
        let identity: MemberIdentity.Resolved
        // The member's auth board carries over to the new replica (its simple tokens stay
        // valid); the stand-in gets one of its own, so that its empty store is never published.
        let authBoard = handle.withReplica { $0.authBoard }
        do {
            guard let recorded = try handle.withReplica({ replica in try replica.recordedIdentity() }) else {
                throw SnapshotInstallError.memberStopped("the member has no recorded identity")
            }
            identity = recorded
        } catch let error as SnapshotInstallError {
            throw error
        } catch {
            throw .memberStopped("cannot read the member's identity: \(error)")
        }
        let imageIndex = try prepare(imagePath: imagePath, snapshotIndex: snapshotIndex, identity: identity, logger: logger)
        let databasePath = Backend.databasePath(dataDirectory: dataDirectory)
        let opener = ReplicaOpener(
            databasePath: databasePath, leases: leases, logger: logger, clock: clock, authBoard: authBoard)
        // An in-memory stand-in holds the handle's place while no file is open, so that the old
        // replica (and its SQLite connection) can be released.
        let standIn: Replica
        do {
            standIn = try Replica(store: MVCCStore(backend: Backend(path: nil)), logger: logger)
        } catch {
            throw .swapFailed("cannot open a stand-in replica: \(error)")
        }
        let installed = try handle.withExclusiveAccess(standIn: standIn) {
            (replica, failed) throws(SnapshotInstallError) -> InstalledSnapshot in
            if failed { throw .memberStopped("the member has failed") }
            return try exchange(&replica, failed: &failed, imagePath: imagePath, opener: opener, syncs: syncs)
        }
        logger.info(
            "installed backend snapshot",
            metadata: [
                "snapshot_index": "\(snapshotIndex)", "applied_index": "\(installed.appliedIndex)",
                "image_index": "\(imageIndex)", "revision": "\(installed.revision)",
            ])
        return installed
    }

    // MARK: Checking the image

    /// Checks the image and records `identity` in it; returns its applied index. The image is
    /// closed again (its WAL checkpointed into it) and synced before this returns.
    private static func prepare(
        imagePath: String, snapshotIndex: UInt64, identity: MemberIdentity.Resolved, logger: Logger
    ) throws(SnapshotInstallError) -> UInt64 {
        guard access(imagePath, R_OK | W_OK) == 0 else { throw .invalidImage("\(imagePath) cannot be read and written") }
        let imageIndex = try checkAndStamp(imagePath: imagePath, snapshotIndex: snapshotIndex, identity: identity, logger: logger)
        // Everything that held the image's connection is released: SQLite has checkpointed its
        // WAL into the file and removed it (the image had no other connection).
        guard access(imagePath + "-wal", F_OK) != 0 else {
            throw .invalidImage("the image's WAL was not checkpointed; is it open elsewhere?")
        }
        do {
            try ImageFile.sync(imagePath)
        } catch {
            throw .invalidImage("\(error)")
        }
        return imageIndex
    }

    private static func checkAndStamp(
        imagePath: String, snapshotIndex: UInt64, identity: MemberIdentity.Resolved, logger: Logger
    ) throws(SnapshotInstallError) -> UInt64 {
        do {
            let backend = try Backend(path: imagePath)
            let verdict = try backend.withStatement("PRAGMA integrity_check(1)") { statement throws(BackendError) in
                try statement.step() ? statement.text(at: 0) : "no result"
            }
            guard verdict == "ok" else { throw SnapshotInstallError.invalidImage("integrity check: \(verdict)") }
            let tables = try backend.withStatement(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('kv', 'meta')"
            ) { statement throws(BackendError) in try statement.step() ? statement.int64(at: 0) : 0 }
            guard tables == 2 else { throw SnapshotInstallError.invalidImage("it has no key-value or meta table") }
            let store = try MVCCStore(backend: backend)
            guard try store.meta("consistent_index") != nil else {
                throw SnapshotInstallError.invalidImage("it records no consistent index")
            }
            let replica = try Replica(store: store, logger: logger)
            guard replica.appliedIndex >= snapshotIndex else {
                throw SnapshotInstallError.staleImage(imageIndex: replica.appliedIndex, snapshotIndex: snapshotIndex)
            }
            try replica.recordIdentity(identity)
            return replica.appliedIndex
        } catch let error as SnapshotInstallError {
            throw error
        } catch {
            throw .invalidImage("\(error)")
        }
    }

    // MARK: Swapping the file

    /// Under the replica's lock: releases the old replica, renames the image over the database
    /// (keeping the old file under a second name until the new one opens), opens the new one.
    private static func exchange(
        _ replica: inout Replica?, failed: inout Bool, imagePath: String, opener: ReplicaOpener, syncs: Bool
    ) throws(SnapshotInstallError) -> InstalledSnapshot {
        let databasePath = opener.databasePath
        let keptPath = databasePath + ".replaced"
        weak let released = replica
        replica = nil
        if let stillHeld = released {
            replica = stillHeld
            throw .databaseInUse("the old replica is still referenced, so its connection is open")
        }
        // The last connection to close checkpoints the WAL and removes it: a WAL left behind
        // means another connection (the checkpointer's) is open and may hold commits in it.
        if access(databasePath + "-wal", F_OK) == 0 {
            replica = try reopenOld(opener, failed: &failed, after: "another connection has the database open")
            throw .databaseInUse("another connection (the checkpointer's?) has \(databasePath) open")
        }
        unlink(databasePath + "-shm")
        unlink(keptPath)
        guard link(databasePath, keptPath) == 0 else {
            let reason = "link \(databasePath): \(String(cString: strerror(errno)))"
            replica = try reopenOld(opener, failed: &failed, after: reason)
            throw .swapFailed(reason)
        }
        do {
            try ImageFile.rename(imagePath, to: databasePath, syncingDirectory: syncs)
        } catch {
            unlink(keptPath)
            replica = try reopenOld(opener, failed: &failed, after: "\(error)")
            throw .swapFailed("\(error)")
        }
        do {
            let opened = try opener.open()
            replica = opened.replica
            unlink(keptPath)
            if syncs { try? ImageFile.syncDirectory(containing: databasePath) }
            return opened.installed
        } catch {
            // Put the old file back under the database's name (the image is lost with it).
            unlink(databasePath + "-wal")
            unlink(databasePath + "-shm")
            do {
                try ImageFile.rename(keptPath, to: databasePath, syncingDirectory: syncs)
            } catch {
                failed = true
                throw .restoreFailed("cannot put the old backend back: \(error)")
            }
            replica = try reopenOld(opener, failed: &failed, after: "\(error)")
            throw .swapFailed("the installed image does not open: \(error)")
        }
    }

    private static func reopenOld(
        _ opener: ReplicaOpener, failed: inout Bool, after reason: String
    ) throws(SnapshotInstallError) -> Replica {
        do {
            return try opener.open().replica
        } catch {
            failed = true
            throw .restoreFailed("\(reason); reopening the old backend: \(error)")
        }
    }
}

/// Opens the member's replica as ``EtcdServer`` does (owner-driven checkpoints, recorded changes).
private struct ReplicaOpener {
    let databasePath: String
    let leases: Lessor.Configuration
    let logger: Logger
    let clock: @Sendable () -> MonotonicTime
    let authBoard: AuthBoard

    func open() throws -> (replica: Replica, installed: InstalledSnapshot) {
        let backend = try Backend(path: databasePath, automaticCheckpoints: false)
        let store = try MVCCStore(backend: backend)
        let replica = try Replica(store: store, logger: logger, leases: leases, authBoard: authBoard, clock: clock)
        replica.store.recordsChanges = true
        let installed = InstalledSnapshot(
            appliedIndex: replica.appliedIndex, appliedTerm: replica.appliedTerm, revision: store.currentRevision,
            compactedRevision: store.compactedRevision)
        return (replica, installed)
    }
}
