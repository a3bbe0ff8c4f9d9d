public import EtcdBackend

/// The lessor's SQL: etcd's "lease" bucket, one row per lease with its granted TTL and its last
/// checkpointed remaining TTL. Writes join the backend transaction that is open (the replica's
/// batch), so a lease changes in the same transaction as the keys it deletes and the consistent
/// index of the entry that changed it.
public struct LeaseTable {
    public let backend: Backend

    public init(backend: Backend) throws(BackendError) {
        self.backend = backend
        try backend.execute(
            """
            CREATE TABLE IF NOT EXISTS lease (
                id INTEGER NOT NULL PRIMARY KEY,
                ttl INTEGER NOT NULL,
                remaining_ttl INTEGER NOT NULL
            )
            """
        )
    }

    public func save(_ lease: PersistedLease) throws(BackendError) {
        let sql = "INSERT OR REPLACE INTO lease (id, ttl, remaining_ttl) VALUES (?1, ?2, ?3)"
        try backend.withStatement(sql) { statement throws(BackendError) in
            try statement.bind(lease.id.rawValue, at: 1)
            try statement.bind(lease.ttl, at: 2)
            try statement.bind(lease.remainingTTL, at: 3)
            try statement.run()
        }
    }

    public func delete(_ id: LeaseID) throws(BackendError) {
        try backend.withStatement("DELETE FROM lease WHERE id = ?1") { statement throws(BackendError) in
            try statement.bind(id.rawValue, at: 1)
            try statement.run()
        }
    }

    /// Every lease, by ID.
    public func all() throws(BackendError) -> [PersistedLease] {
        try backend.withStatement("SELECT id, ttl, remaining_ttl FROM lease ORDER BY id") {
            statement throws(BackendError) -> [PersistedLease] in
            var leases: [PersistedLease] = []
            while try statement.step() {
                leases.append(
                    PersistedLease(
                        id: LeaseID(statement.int64(at: 0)), ttl: statement.int64(at: 1),
                        remainingTTL: statement.int64(at: 2)
                    )
                )
            }
            return leases
        }
    }
}
