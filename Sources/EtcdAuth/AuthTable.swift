import EtcdAPI
public import EtcdBackend
import SwiftProtobuf

/// The auth store's SQL (etcd's "auth", "authUsers" and "authRoles" buckets): the enabled flag
/// and the revision, and each user and role as its marshalled protobuf, as etcd keeps them.
/// Writes join the backend transaction that is open (the replica's batch), so a change is
/// committed with the consistent index of the entry that made it, and travels in snapshots.
public struct AuthTable {
    public let backend: Backend

    public init(backend: Backend) throws(BackendError) {
        self.backend = backend
        try backend.execute(
            """
            CREATE TABLE IF NOT EXISTS auth_meta (name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS auth_users (name BLOB NOT NULL PRIMARY KEY, user BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS auth_roles (name BLOB NOT NULL PRIMARY KEY, role BLOB NOT NULL);
            """
        )
    }

    /// The stored store; a backend that never had one gives a new store.
    public func load() throws(AuthTableError) -> AuthStore {
        do {
            let meta = try backend.withStatement("SELECT name, value FROM auth_meta") {
                statement throws(BackendError) -> [String: Int64] in
                var meta: [String: Int64] = [:]
                while try statement.step() { meta[statement.text(at: 0)] = statement.int64(at: 1) }
                return meta
            }
            let userRows = try rows("SELECT user FROM auth_users ORDER BY name")
            let roleRows = try rows("SELECT role FROM auth_roles ORDER BY name")
            let users = try userRows.map { try Authpb_User(serializedBytes: $0) }
            let roles = try roleRows.map { try Authpb_Role(serializedBytes: $0) }
            return AuthStore(
                isEnabled: (meta["enabled"] ?? 0) != 0, revision: UInt64(clamping: meta["revision"] ?? 1), users: users,
                roles: roles)
        } catch let error as BackendError {
            throw .backend(error)
        } catch {
            throw .undecodable("\(error)")
        }
    }

    private func rows(_ sql: String) throws(BackendError) -> [[UInt8]] {
        try backend.withStatement(sql) { statement throws(BackendError) -> [[UInt8]] in
            var rows: [[UInt8]] = []
            while try statement.step() { rows.append(statement.bytes(at: 0)) }
            return rows
        }
    }

    /// Writes what `change` says changed in `store` (the store after the change).
    public func save(_ change: AuthStore.Change, of store: AuthStore) throws(AuthTableError) {
        do {
            if change.metaChanged {
                try setMeta("enabled", store.isEnabled ? 1 : 0)
                try setMeta("revision", Int64(clamping: store.revision))
            }
            for user in change.savedUsers {
                try upsert("INSERT OR REPLACE INTO auth_users (name, user) VALUES (?1, ?2)", Array(user.name), try user.serializedBytes())
            }
            for name in change.deletedUsers { try delete("DELETE FROM auth_users WHERE name = ?1", Array(name.utf8)) }
            for role in change.savedRoles {
                try upsert("INSERT OR REPLACE INTO auth_roles (name, role) VALUES (?1, ?2)", Array(role.name), try role.serializedBytes())
            }
            for name in change.deletedRoles { try delete("DELETE FROM auth_roles WHERE name = ?1", Array(name.utf8)) }
        } catch let error as BackendError {
            throw .backend(error)
        } catch {
            throw .undecodable("\(error)")
        }
    }

    private func setMeta(_ name: String, _ value: Int64) throws(BackendError) {
        try backend.withStatement("INSERT OR REPLACE INTO auth_meta (name, value) VALUES (?1, ?2)") {
            statement throws(BackendError) in
            try statement.bind(name, at: 1)
            try statement.bind(value, at: 2)
            try statement.run()
        }
    }

    private func upsert(_ sql: String, _ name: [UInt8], _ value: [UInt8]) throws(BackendError) {
        try backend.withStatement(sql) { statement throws(BackendError) in
            try statement.bind(name, at: 1)
            try statement.bind(value, at: 2)
            try statement.run()
        }
    }

    private func delete(_ sql: String, _ name: [UInt8]) throws(BackendError) {
        try backend.withStatement(sql) { statement throws(BackendError) in
            try statement.bind(name, at: 1)
            try statement.run()
        }
    }
}

public enum AuthTableError: Error, Sendable {
    case backend(BackendError)
    /// A stored user or role that does not decode.
    case undecodable(String)
}
