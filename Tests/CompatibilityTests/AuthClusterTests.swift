import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

/// Auth in a three-member cluster, on real etcd and on swift-etcd: users and roles made through
/// one member hold on all; a simple token made by one member works on every member (each waits
/// for the Authenticate entry to be applied); lease calls a follower passes to the leader carry
/// the caller's identity.
@Suite("Auth in a three-member cluster", .serialized)
struct AuthClusterTests {
    private static func scenario(_ cluster: EtcdCluster) async throws -> [String] {
        var record: [String] = []
        let first = cluster.etcdctl([cluster.members[0]])
        for step in [
            ["user", "add", "root:rootpw"], ["user", "add", "alice:alicepw"], ["role", "add", "r"],
            ["role", "grant-permission", "r", "readwrite", "k", "--prefix"], ["user", "grant-role", "alice", "r"],
            ["auth", "enable"],
        ] {
            let result = try await first.run(step)
            // clientv3's retry warnings carry timestamps and client IDs; the error lines stay.
            let errors = result.standardError.split(separator: "\n").filter { !$0.hasPrefix("{\"level\"") }
            record.append("\(step.joined(separator: " ")): \(result.standardOutput.trimmed) \(errors.joined(separator: " "))")
        }
        // Through each member in turn: its own login, a write, reads of what the others wrote.
        for (index, member) in cluster.members.enumerated() {
            let one = cluster.etcdctl([member])
            let put = try await one.run("--user", "alice:alicepw", "put", "k\(index)", "v\(index)")
            record.append("put via member \(index + 1): \(put.standardOutput.trimmed)")
            let get = try await one.run("--user", "alice:alicepw", "get", "k", "--prefix", "--print-value-only")
            record.append("get via member \(index + 1): \(get.standardOutput.trimmed.replacingOccurrences(of: "\n", with: " "))")
            let denied = try await one.run("--user", "alice:alicepw", "get", "other")
            record.append("denied via member \(index + 1): \(denied.standardError.split(separator: "\n").last ?? "")")
        }
        // One token, made by the first member, used on every member.
        let token = try await withEtcdGRPCClient(port: cluster.members[0].clientPort) { client in
            var login = Etcdserverpb_AuthenticateRequest()
            login.name = "alice"
            login.password = "alicepw"
            return try await client.auth.authenticate(login).token
        }
        var metadata = Metadata()
        metadata.addString(token, forKey: "token")
        for (index, member) in cluster.members.enumerated() {
            let outcome = try await withEtcdGRPCClient(port: member.clientPort) { client -> String in
                var range = Etcdserverpb_RangeRequest()
                range.key = Data("k0".utf8)
                let read = try await client.kv.range(range, metadata: metadata)
                // A lease granted and asked about through this member: a follower asks the
                // leader, passing the token on.
                var grant = Etcdserverpb_LeaseGrantRequest()
                grant.ttl = 60
                let lease = try await client.lease.leaseGrant(grant, metadata: metadata)
                var put = Etcdserverpb_PutRequest()
                put.key = Data("k-leased-\(index)".utf8)
                put.lease = lease.id
                _ = try await client.kv.put(put, metadata: metadata)
                var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
                timeToLive.id = lease.id
                timeToLive.keys = true
                let alive = try await client.lease.leaseTimeToLive(timeToLive, metadata: metadata)
                // The same index with other letters: no member made it.
                var forged = Metadata()
                forged.addString((token.first == "a" ? "b" : "a") + token.dropFirst(), forKey: "token")
                let refused: String
                do {
                    _ = try await client.kv.range(range, metadata: forged)
                    refused = "served"
                } catch let error as RPCError {
                    refused = "\(error.code): \(error.message)"
                }
                return "read \(read.kvs.map { String(decoding: $0.value, as: UTF8.self) }), lease keys "
                    + "\(alive.keys.map { String(decoding: $0, as: UTF8.self) }), another token: \(refused)"
            }
            record.append("token via member \(index + 1): \(outcome)")
        }
        return record
    }

    @Test("users, roles and tokens across members; followers pass the caller's token to the leader")
    func acrossMembers() async throws {
        let options = ["--bcrypt-cost=4"]
        let etcd = try await withEtcdCluster(.realEtcd, extraArguments: options, Self.scenario)
        let candidate = try await withEtcdCluster(.candidate, extraArguments: options, Self.scenario)
        #expect(candidate == etcd)
        #expect(etcd.contains { $0.contains("permission denied") })
        #expect(etcd.contains { $0.contains("invalid auth token") })
    }
}
