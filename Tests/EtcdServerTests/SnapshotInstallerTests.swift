import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdRaft
import EtcdReplica
import Foundation
import Logging
import SwiftProtobuf
import Testing

@testable import EtcdServer

/// One member's data directory and replica, written through applied entries as the Raft loop does.
private final class MemberData {
    let directory: String
    let replica: Replica
    private var nextID: UInt64 = 1

    init(_ directory: String, identity: MemberIdentity.Resolved) throws {
        self.directory = directory
        let backend = try Backend(dataDirectory: directory, automaticCheckpoints: false)
        replica = try Replica(store: MVCCStore(backend: backend), logger: Logger(label: "etcd.snapshot.test"))
        _ = try replica.resolveIdentity(identity)
    }

    func apply(_ requests: [Etcdserverpb_InternalRaftRequest]) throws {
        var entries: [Entry] = []
        for var request in requests {
            request.header.id = nextID
            nextID += 1
            let index = replica.appliedIndex + UInt64(entries.count) + 1
            entries.append(Entry(term: 3, index: index, data: try request.serializedBytes()))
        }
        for result in try replica.apply(entries) { _ = try result.result.get() }
        try replica.commitBackend(durably: false)
    }

    func put(_ key: String, _ value: String, lease: Int64 = 0) throws {
        var request = Etcdserverpb_InternalRaftRequest()
        request.put.key = Data(key.utf8)
        request.put.value = Data(value.utf8)
        request.put.lease = lease
        try apply([request])
    }

    func grant(_ id: Int64, ttl: Int64) throws {
        var request = Etcdserverpb_InternalRaftRequest()
        request.leaseGrant.id = id
        request.leaseGrant.ttl = ttl
        try apply([request])
    }

    func compact(_ revision: Int64) throws {
        var request = Etcdserverpb_InternalRaftRequest()
        request.compaction.revision = revision
        try apply([request])
        while try replica.compactStep(limit: 100) > 0 {}
        try replica.commitBackend(durably: true)
    }
}

/// What a member serves, compared between the image's source and the member that installed it.
private struct Served: Equatable {
    var keys: [String: String]
    var revision: Int64
    var compactedRevision: Int64
    var leases: [Int64: [String]]
    var members: [ClusterMember]
    var appliedIndex: UInt64

    init(_ replica: Replica) throws {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data([0])
        range.rangeEnd = Data([0])
        let response = try replica.range(range)
        keys = Dictionary(uniqueKeysWithValues: response.kvs.map {
            (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self))
        })
        revision = replica.store.currentRevision
        compactedRevision = replica.store.compactedRevision
        var leases: [Int64: [String]] = [:]
        for id in replica.lessor.leasesByExpiry() {
            leases[id.rawValue] = (replica.lessor.attachedKeys(id) ?? []).map { String(decoding: $0, as: UTF8.self) }.sorted()
        }
        self.leases = leases
        members = replica.membership.sortedMembers
        appliedIndex = replica.appliedIndex
    }
}

private let leaderIdentity = MemberIdentity.Resolved(member: MemberID(0xa1), cluster: ClusterID(0xc1))
private let followerIdentity = MemberIdentity.Resolved(member: MemberID(0xb2), cluster: ClusterID(0xc1))

private func temporaryRoot() throws -> String {
    let path = NSTemporaryDirectory() + "swift-etcd-install-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The leader's data: keys, overwritten keys, a lease with keys, a compaction and two members.
private func leaderData(_ directory: String) throws -> MemberData {
    let leader = try MemberData(directory, identity: leaderIdentity)
    try leader.replica.seedMembership(ClusterMember(id: MemberID(0xa1), peerURLs: ["http://127.0.0.1:2380"]))
    try leader.replica.seedMembership(ClusterMember(id: MemberID(0xb2), peerURLs: ["http://127.0.0.1:2381"]))
    for round in 0..<3 {
        for key in 0..<20 { try leader.put("key-\(key)", "value-\(key)-\(round)") }
    }
    try leader.grant(77, ttl: 600)
    try leader.put("leased-1", "x", lease: 77)
    try leader.put("leased-2", "y", lease: 77)
    try leader.compact(30)
    try leader.put("after-compaction", "z")
    return leader
}

/// The follower: other, older data.
private func followerHandle(_ directory: String) throws -> ReplicaHandle {
    let follower = try MemberData(directory, identity: followerIdentity)
    try follower.put("old-key", "old")
    return ReplicaHandle(follower.replica)
}

private func install(
    _ image: String, snapshotIndex: UInt64, into directory: String, _ handle: ReplicaHandle
) throws(SnapshotInstallError) -> InstalledSnapshot {
    try SnapshotInstaller.install(
        imagePath: image, snapshotIndex: snapshotIndex, dataDirectory: directory, into: handle,
        leases: Lessor.Configuration(minTTLSeconds: 2), logger: Logger(label: "etcd.snapshot.test"))
}

private func servesOldData(_ handle: ReplicaHandle) throws -> Bool {
    try handle.read { replica in
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("old-key".utf8)
        return try replica.range(range).kvs.first?.value == Data("old".utf8)
    }
}

@Suite("Snapshot installer: a received backend image replaces a member's backend")
struct SnapshotInstallerTests {
    @Test("an image of another member's store is served whole: keys, revisions, leases, membership, applied index; the member keeps its own IDs")
    func installs() throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let leader = try leaderData(root + "/leader")
        let expected = try Served(leader.replica)
        let image = root + "/image.snap.db"
        try BackendImage.write(databaseAt: Backend.databasePath(dataDirectory: leader.directory), to: image)

        let handle = try followerHandle(root + "/follower")
        let installed = try install(image, snapshotIndex: leader.replica.appliedIndex, into: root + "/follower", handle)
        #expect(installed.appliedIndex == leader.replica.appliedIndex)
        #expect(installed.revision == leader.replica.store.currentRevision)
        #expect(installed.compactedRevision == 30)
        #expect(!FileManager.default.fileExists(atPath: image), "the image is consumed")
        let served = try handle.read { try Served($0) }
        #expect(served == expected)
        #expect(expected.leases == [77: ["leased-1", "leased-2"]])
        #expect(expected.members.count == 2)
        #expect(try handle.read { try $0.recordedIdentity() }?.member == followerIdentity.member)
        #expect(try handle.read { $0.store.recordsChanges })
        #expect(!FileManager.default.fileExists(atPath: Backend.databasePath(dataDirectory: root + "/follower") + ".replaced"))

        // The new backend is the one on disk: a restart of the member finds it.
        try handle.withReplica { try $0.commitBackend(durably: true) }
        handle.replace(with: try Replica(store: MVCCStore(backend: Backend(path: nil)), logger: Logger(label: "t")))
        let reopened = try Replica(
            store: MVCCStore(backend: Backend(dataDirectory: root + "/follower")), logger: Logger(label: "t"))
        #expect(try Served(reopened) == expected)
        #expect(try reopened.recordedIdentity()?.member == followerIdentity.member)
    }

    @Test("an image below the snapshot's index, a truncated or corrupt image, or a non-backend is refused and the old data is still served")
    func refusals() throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let leader = try leaderData(root + "/leader")
        let source = Backend.databasePath(dataDirectory: leader.directory)
        let handle = try followerHandle(root + "/follower")
        let follower = root + "/follower"

        let stale = root + "/stale.db"
        try BackendImage.write(databaseAt: source, to: stale)
        #expect(throws: SnapshotInstallError.staleImage(imageIndex: leader.replica.appliedIndex, snapshotIndex: 1_000)) {
            try install(stale, snapshotIndex: 1_000, into: follower, handle)
        }
        #expect(try servesOldData(handle))

        let truncated = root + "/truncated.db"
        try BackendImage.write(databaseAt: source, to: truncated)
        let whole = try Data(contentsOf: URL(fileURLWithPath: truncated))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: truncated))
        let truncatedError = try #require(throws: SnapshotInstallError.self) {
            try install(truncated, snapshotIndex: 1, into: follower, handle)
        }
        guard case .invalidImage = truncatedError else { throw UnexpectedInstall(error: truncatedError) }
        #expect(try servesOldData(handle))

        let corrupt = root + "/corrupt.db"
        try BackendImage.write(databaseAt: source, to: corrupt)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: corrupt)))
        for index in stride(from: 4_096, to: bytes.count, by: 7) { bytes[index] ^= 0x5a }
        try Data(bytes).write(to: URL(fileURLWithPath: corrupt))
        let corruptError = try #require(throws: SnapshotInstallError.self) {
            try install(corrupt, snapshotIndex: 1, into: follower, handle)
        }
        guard case .invalidImage = corruptError else { throw UnexpectedInstall(error: corruptError) }

        let stranger = root + "/stranger.db"
        do {
            let other = try Backend(path: stranger)
            try other.execute("CREATE TABLE t (x INTEGER)")
        }
        let strangerError = try #require(throws: SnapshotInstallError.self) {
            try install(stranger, snapshotIndex: 1, into: follower, handle)
        }
        guard case .invalidImage = strangerError else { throw UnexpectedInstall(error: strangerError) }
        #expect(try servesOldData(handle))
        #expect(!handle.hasFailed)
    }

    @Test("with another connection open on the member's database (the checkpointer's) nothing is swapped")
    func databaseInUse() throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let leader = try leaderData(root + "/leader")
        let image = root + "/image.db"
        try BackendImage.write(databaseAt: Backend.databasePath(dataDirectory: leader.directory), to: image)
        let handle = try followerHandle(root + "/follower")
        let checkpointer = try BackendCheckpointer(path: Backend.databasePath(dataDirectory: root + "/follower"))
        let error = try #require(throws: SnapshotInstallError.self) {
            try install(image, snapshotIndex: 1, into: root + "/follower", handle)
        }
        guard case .databaseInUse = error else { throw UnexpectedInstall(error: error) }
        #expect(try servesOldData(handle))
        #expect(FileManager.default.fileExists(atPath: image))
        try checkpointer.checkpointFully()
        // A failed member refuses outright.
        handle.markFailed()
        #expect(throws: SnapshotInstallError.memberStopped("the member has failed")) {
            try install(image, snapshotIndex: 1, into: root + "/follower", handle)
        }
    }
}

@Suite("Snapshot path end to end", .serialized)
struct SnapshotEndToEndTests {
    @Test("a leader's image, taken while it keeps writing, crosses the peer transport and is installed by the follower")
    func leaderToFollower() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let leader = try leaderData(root + "/leader")
        let snapshotIndex = leader.replica.appliedIndex
        let expected = try Served(leader.replica)
        let leaderDatabase = Backend.databasePath(dataDirectory: leader.directory)
        // Applied but not committed in SQLite: never part of an image.
        var open = Etcdserverpb_InternalRaftRequest()
        open.put.key = Data("uncommitted".utf8)
        _ = try leader.replica.apply([Entry(term: 3, index: snapshotIndex + 1, data: try open.serializedBytes())])

        let a = SnapshotNode(0xa1, snapshotDirectory: nil)
        let b = SnapshotNode(0xb2, snapshotDirectory: root + "/follower/member/snap")
        try await SnapshotNode.connect(a, b)
        let message = SnapshotNode.msgSnap(from: 0xa1, to: 0xb2, index: snapshotIndex, term: 3)
        let imagePath = root + "/leader-image.snap.db"
        a.transport.sendSnapshot(message) {
            try BackendImage.write(databaseAt: leaderDatabase, to: imagePath)
            return imagePath
        }
        try await waitUntil { a.reports.count == 1 && b.deliveries.count == 1 }
        #expect(a.reports.first?.status == .finished)
        let delivery = try #require(b.deliveries.first)

        let handle = try followerHandle(root + "/follower")
        let installed = try install(delivery.path, snapshotIndex: snapshotIndex, into: root + "/follower", handle)
        #expect(installed.appliedIndex == snapshotIndex)
        #expect(try handle.read { try Served($0) } == expected)
        #expect(!FileManager.default.fileExists(atPath: delivery.path))
        await a.transport.shutdown()
        await b.transport.shutdown()
    }
}

extension SnapshotEndToEndTests {
    @Test("a MsgSnap older than its image, not listing its receiver, goes described by the image: applied index, term, membership")
    func describedByImage() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let leader = try leaderData(root + "/leader")
        let appliedIndex = leader.replica.appliedIndex
        let leaderDatabase = Backend.databasePath(dataDirectory: leader.directory)
        let a = SnapshotNode(0xa1, snapshotDirectory: nil)
        let b = SnapshotNode(0xb2, snapshotDirectory: root + "/follower/member/snap")
        try await SnapshotNode.connect(a, b)
        // Raft's latest snapshot, taken before 0xb2 joined: it lists only 0xa1.
        var stale = SnapshotNode.msgSnap(from: 0xa1, to: 0xb2, index: 5, term: 2)
        stale.snapshot?.metadata.confState = ConfState(voters: [NodeID(0xa1)])
        let imagePath = root + "/leader-image.snap.db"
        a.transport.sendSnapshot(stale) { () throws -> PeerSnapshotImage in
            _ = try BackendImage.write(databaseAt: leaderDatabase, to: imagePath)
            return PeerSnapshotImage(path: imagePath, metadata: try SnapshotImageDescription.read(imagePath: imagePath))
        }
        try await waitUntil { a.reports.count == 1 && b.deliveries.count == 1 }
        let metadata = try #require(b.deliveries.first?.message.snapshot?.metadata)
        #expect(metadata.index == appliedIndex)
        #expect(metadata.term == 3)
        #expect(metadata.confState == ConfState(voters: [NodeID(0xa1), NodeID(0xb2)]))
        // A description older than Raft's snapshot is never sent in its place.
        let newer = SnapshotNode.msgSnap(from: 0xa1, to: 0xb2, index: appliedIndex + 10, term: 3)
        #expect(PeerSnapshotImage(path: imagePath, metadata: metadata).describing(newer) == newer)
        await a.transport.shutdown()
        await b.transport.shutdown()
    }
}

private struct UnexpectedInstall: Error {
    var error: SnapshotInstallError
}
