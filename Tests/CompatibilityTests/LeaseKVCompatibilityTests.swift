import EtcdAPI
import EtcdTestSupport
import Testing

/// Keys attached to leases. Leases are granted over gRPC with an explicit ID, so that both servers
/// use the same IDs and every output can be compared.
@Suite("Keys with leases, compatibility with real etcd")
struct LeaseKVCompatibilityTests {
    static let leaseID: Int64 = 0x1234_abcd

    static func grant(_ side: CompatibilitySession, _ etcd: EtcdGRPCClient, id: Int64, ttl: Int64) async {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.id = id
        request.ttl = ttl
        await side.grpc("Lease.LeaseGrant", request) { try await etcd.lease.leaseGrant($0) }
    }

    @Test("put --lease attaches a granted lease, --ignore-lease keeps it, a plain put detaches it, revoke deletes")
    func keysWithLeases() async throws {
        try await expectCompatible(
            "keys with leases",
            referenceMentions: ["etcdserver: requested lease not found", "etcdserver: lease already exists"]
        ) { side in
            try await side.server.withGRPCClient { etcd in
                await Self.grant(side, etcd, id: Self.leaseID, ttl: 600)
                await Self.grant(side, etcd, id: Self.leaseID, ttl: 600)
                await Self.grant(side, etcd, id: 0x77, ttl: 600)
                try await side.etcdctl("put", "k", "v1", "--lease=1234abcd", "-w", "json")
                try await side.etcdctl("put", "k2", "v", "--lease=1234abcd")
                try await side.etcdctl("put", "k3", "v", "--lease=77")
                try await side.etcdctl("get", "k", "-w", "json")
                try await side.etcdctl("put", "k", "v2", "--ignore-lease", "--prev-kv", "-w", "json")
                try await side.etcdctl("get", "k", "-w", "json")
                for compare in [
                    KVRequest.compare("k", .equal, .lease(Self.leaseID)),
                    KVRequest.compare("k", .equal, .lease(0)),
                    KVRequest.compare("k", end: "l", .equal, .lease(Self.leaseID)),
                    KVRequest.compare("k3", .greater, .lease(0x76)),
                ] {
                    await side.grpc("KV.Txn", KVRequest.txn([compare])) { try await etcd.kv.txn($0) }
                }
                // Moving a key to another lease, then off leases altogether.
                try await side.etcdctl("put", "k3", "v2", "--lease=1234abcd", "-w", "json")
                try await side.etcdctl("put", "k2", "v2", "-w", "json")
                try await side.etcdctl("get", "k", "--prefix", "-w", "json")
                // (`lease list` only once a single lease is left: etcd lists leases in Go map order.)
                try await side.etcdctl("lease", "revoke", "1234abcd")
                try await side.etcdctl("get", "k", "--prefix", "-w", "json")
                try await side.etcdctl("lease", "revoke", "1234abcd")
                try await side.etcdctl("put", "k", "v", "--lease=1234abcd")
                try await side.etcdctl("lease", "list")
                try await side.recordRevision()
            }
        }
    }
}
