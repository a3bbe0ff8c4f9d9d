import EtcdTestSupport
import Foundation
import Testing

/// etcd's corruption checks on a three-member swift-etcd cluster, with one member's backend
/// damaged behind its back (a value changed in its SQLite file while it was down).
@Suite("Corruption checks", .serialized)
struct CorruptionCheckTests {
    /// Changes the stored value of every revision of `key` in the member's backend file.
    static func damage(_ cluster: EtcdCluster, _ member: EtcdCluster.Member, key: String) async throws {
        let database = cluster.dataDirectory(of: member).appendingPathComponent("member/db.sqlite").path
        let script = """
            import sqlite3, sys
            connection = sqlite3.connect(sys.argv[1])
            changed = connection.execute("UPDATE kv SET value = x'ff' WHERE key = CAST(? AS BLOB)", (sys.argv[2],)).rowcount
            connection.commit()
            print(changed)
            """
        try await withTemporaryDirectory(prefix: "damage") { scratch in
            let output = scratch.appending("out")
            let child = try ChildProcess(
                executable: URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", "-c", script, database, key],
                standardOutput: output, standardError: output)
            let exit = await child.waitForExit(timeout: .seconds(30))
            let printed = String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self)
            try #require(exit?.status == 0 && printed.trimmingCharacters(in: .whitespacesAndNewlines) != "0", "\(printed)")
        }
    }

    /// Writes ten keys and returns the leader and a follower that has applied them all.
    static func writeAndPickFollower(_ cluster: EtcdCluster) async throws -> (EtcdCluster.Member, EtcdCluster.Member) {
        let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
        let follower = try #require(cluster.members.first { $0 != leader })
        for index in 0..<10 { #expect(try await cluster.etcdctl().run("put", "k\(index)", "v\(index)").succeeded) }
        let synced = try await poll(timeout: .seconds(10), interval: .milliseconds(100)) {
            try await cluster.etcdctl([follower]).run("get", "k9", "--consistency=s", "--print-value-only")
                .standardOutput.contains("v9")
        }
        try #require(synced)
        return (leader, follower)
    }

    @Test("--experimental-initial-corrupt-check: a member whose data differs from its peers' refuses to start")
    func initialCheck() async throws {
        try await withEtcdCluster(.candidate, extraArguments: ["--experimental-initial-corrupt-check"]) { cluster in
            let (leader, victim) = try await Self.writeAndPickFollower(cluster)
            _ = await cluster.stop(victim)
            // Restarted untouched, it passes the check.
            try await cluster.restart(victim)
            _ = await cluster.stop(victim)
            try await Self.damage(cluster, victim, key: "k3")
            try await cluster.restart(victim, wait: false)
            let exited = await poll(timeout: .seconds(20), interval: .milliseconds(100)) {
                cluster.process(of: victim)?.exitStatus != nil
            }
            #expect(exited, "the damaged member kept running\n\(cluster.logTails())")
            let log = String(decoding: (try? Data(contentsOf: cluster.logFile(of: victim))) ?? Data(), as: UTF8.self)
            #expect(log.contains("found data inconsistency with peers"), "\(log.suffix(3_000))")
            // The others go on serving.
            #expect(try await cluster.etcdctl([leader]).run("put", "after", "1").succeeded)
        }
    }

    @Test("--experimental-corrupt-check-time: the leader raises CORRUPT for a member whose hash differs, and writes stop")
    func periodicCheck() async throws {
        try await withEtcdCluster(.candidate, extraArguments: ["--experimental-corrupt-check-time=1s"]) { cluster in
            let (leader, victim) = try await Self.writeAndPickFollower(cluster)
            // Healthy data: a few checks pass without an alarm.
            try await Task.sleep(for: .seconds(2))
            #expect(try await cluster.etcdctl().run("alarm", "list").standardOutput.isEmpty)
            _ = await cluster.stop(victim)
            try await Self.damage(cluster, victim, key: "k3")
            try await cluster.restart(victim)
            let victimID = try await cluster.etcdctl([victim]).run("endpoint", "status", "-w", "json")
            let id = try #require(
                (try JSONValue(parsing: victimID.standardOutput))[0]?["Status"]?["header"]?["member_id"]?.unsignedValue)
            let raised = try await poll(timeout: .seconds(15), interval: .milliseconds(200)) {
                try await cluster.etcdctl([leader]).run("alarm", "list").standardOutput.contains("memberID:\(id) alarm:CORRUPT")
            }
            #expect(raised, "\(cluster.logTails())")
            let put = try await cluster.etcdctl([leader]).run("put", "after", "1")
            #expect(!put.succeeded && put.standardError.contains("etcdserver: corrupt cluster"), "\(put)")
            // Reads still work.
            #expect(try await cluster.etcdctl([leader]).run("get", "k1", "--print-value-only").standardOutput.contains("v1"))
        }
    }

    @Test("with auth on, the checks still compare every member's hash (peers are asked on their peer port) and raise CORRUPT")
    func periodicCheckWithAuth() async throws {
        try await withEtcdCluster(.candidate, extraArguments: ["--experimental-corrupt-check-time=1s", "--bcrypt-cost=4"]) { cluster in
            let (leader, victim) = try await Self.writeAndPickFollower(cluster)
            let all = cluster.etcdctl()
            for step in [["user", "add", "root:rootpw"], ["auth", "enable"]] {
                #expect(try await all.run(step).succeeded)
            }
            let root = ["--user", "root:rootpw"]
            try await Task.sleep(for: .seconds(2))
            #expect(try await cluster.etcdctl([leader]).run(root + ["alarm", "list"]).standardOutput.isEmpty)
            _ = await cluster.stop(victim)
            try await Self.damage(cluster, victim, key: "k3")
            try await cluster.restart(victim)
            let raised = try await poll(timeout: .seconds(15), interval: .milliseconds(200)) {
                try await cluster.etcdctl([leader]).run(root + ["alarm", "list"]).standardOutput.contains("alarm:CORRUPT")
            }
            #expect(raised, "\(cluster.logTails())")
            let put = try await cluster.etcdctl([leader]).run(root + ["put", "after", "1"])
            #expect(!put.succeeded && put.standardError.contains("etcdserver: corrupt cluster"), "\(put)")
        }
    }
}
