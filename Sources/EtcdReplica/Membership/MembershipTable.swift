public import EtcdBackend
import EtcdCommon
import Foundation

/// The membership in the backend (etcd's "members" and "members_removed" buckets): one row per
/// member holding its JSON, and the IDs of removed members. Writes join the open backend
/// transaction, so a membership change is committed with the consistent index of its entry.
public struct MembershipTable {
    public let backend: Backend

    public init(backend: Backend) throws(BackendError) {
        self.backend = backend
        try backend.execute(
            """
            CREATE TABLE IF NOT EXISTS members (id INTEGER NOT NULL PRIMARY KEY, member BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS members_removed (id INTEGER NOT NULL PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS cluster (name TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
            """
        )
    }

    /// Forgets every member, removed member and the cluster version (a restored snapshot starts
    /// a new cluster, whose members come from its own bootstrap).
    public func clear() throws(BackendError) {
        try backend.execute("DELETE FROM members; DELETE FROM members_removed; DELETE FROM cluster;")
    }

    /// Writes `membership` as a whole: members that are gone lose their rows.
    public func save(_ membership: ClusterMembership) throws(BackendError) {
        try backend.execute("DELETE FROM members")
        for member in membership.sortedMembers {
            let encoded: [UInt8]
            do {
                encoded = Array(try JSONEncoder().encode(member))
            } catch {
                throw BackendError(code: 1 /* SQLITE_ERROR */, message: "cannot encode member \(member.id): \(error)", operation: "save members")
            }
            try backend.withStatement("INSERT INTO members (id, member) VALUES (?1, ?2)") { statement throws(BackendError) in
                try statement.bind(Int64(bitPattern: member.id.rawValue), at: 1)
                try statement.bind(encoded, at: 2)
                try statement.run()
            }
        }
        for id in membership.removed.sorted() {
            try backend.withStatement("INSERT OR IGNORE INTO members_removed (id) VALUES (?1)") { statement throws(BackendError) in
                try statement.bind(Int64(bitPattern: id.rawValue), at: 1)
                try statement.run()
            }
        }
    }

    /// The membership as last saved. A row that does not decode is a damaged backend: it is
    /// reported as a backend error (the member refuses to start) rather than skipped.
    public func load(maxLearners: Int = ClusterMembership.defaultMaxLearners) throws(BackendError) -> ClusterMembership {
        let rows = try backend.withStatement("SELECT id, member FROM members ORDER BY id") {
            statement throws(BackendError) -> [(Int64, [UInt8])] in
            var rows: [(Int64, [UInt8])] = []
            while try statement.step() { rows.append((statement.int64(at: 0), statement.bytes(at: 1))) }
            return rows
        }
        var members: [ClusterMember] = []
        for (id, bytes) in rows {
            guard let member = try? JSONDecoder().decode(ClusterMember.self, from: Data(bytes)),
                member.id.rawValue == UInt64(bitPattern: id)
            else {
                // SQLITE_CORRUPT, so `isCorruption` tells the operator the data directory needs repair.
                throw BackendError(code: 11, message: "member row \(UInt64(bitPattern: id)) does not decode", operation: "load members")
            }
            members.append(member)
        }
        let removed = try backend.withStatement("SELECT id FROM members_removed ORDER BY id") {
            statement throws(BackendError) -> Set<MemberID> in
            var removed: Set<MemberID> = []
            while try statement.step() { removed.insert(MemberID(UInt64(bitPattern: statement.int64(at: 0)))) }
            return removed
        }
        return ClusterMembership(members: members, removed: removed, maxLearners: maxLearners)
    }

    /// Records the cluster version (etcd's "cluster" bucket, key "clusterVersion").
    public func saveClusterVersion(_ version: String) throws(BackendError) {
        try backend.withStatement("INSERT OR REPLACE INTO cluster (name, value) VALUES ('cluster_version', ?1)") {
            statement throws(BackendError) in
            try statement.bind(version, at: 1)
            try statement.run()
        }
    }

    /// The cluster version last recorded, nil before the first.
    public func clusterVersion() throws(BackendError) -> String? {
        try backend.withStatement("SELECT value FROM cluster WHERE name = 'cluster_version'") {
            statement throws(BackendError) -> String? in
            try statement.step() ? statement.text(at: 0) : nil
        }
    }
}
