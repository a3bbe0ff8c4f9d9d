import EtcdTestSupport
import Foundation
import Testing

/// swift-etcd keeps every key, revision and version across a graceful restart, and every
/// acknowledged write across a crash, on the same data directory. (Env `COMPAT_BOTH_REAL=1` runs it on real etcd, to check the test itself.)
@Suite("Restart of swift-etcd on the same data directory")
struct RestartTests {
    /// Reads that must answer the same before and after the restart: the whole keyspace now, a few
    /// historical revisions, and a prefix range. Headers keep `cluster_id` and `member_id`, which a
    /// restart must not change; only `raft_term` may move.
    static func observe(_ etcdctl: Etcdctl, historicalRevisions: [Int]) async throws -> [String: JSONValue] {
        var observed: [String: JSONValue] = [:]
        var reads = [["get", "", "--prefix", "-w", "json"], ["get", "key1", "--prefix", "-w", "json"]]
        reads += historicalRevisions.map { ["get", "", "--prefix", "--rev=\($0)", "-w", "json"] }
        for read in reads {
            let result = try await etcdctl.run(read)
            try #require(result.succeeded, "\(result)")
            observed[read.joined(separator: " ")] = withoutRaftTerm(try JSONValue(parsing: result.standardOutput))
        }
        return observed
    }

    static func mustSucceed(_ result: EtcdctlResult, server: EtcdProcess) throws {
        try #require(result.succeeded, "\(result)\nserver log:\n\(server.logTail())")
    }

    static func withoutRaftTerm(_ value: JSONValue) -> JSONValue {
        guard case .object(var members) = value, case .object(var header)? = members["header"] else { return value }
        header["raft_term"] = nil
        members["header"] = .object(header)
        return .object(members)
    }

    @Test("keys, revisions, create and mod revisions and versions survive SIGTERM and a restart")
    func restartKeepsEverything() async throws {
        try await withEtcd(.candidate) { server in
            let etcdctl = server.etcdctl
            func run(_ arguments: [String], standardInput: String? = nil) async throws {
                try await Self.mustSucceed(etcdctl.run(arguments, standardInput: standardInput), server: server)
            }
            for index in 0..<60 {
                try await run(["put", "key\(index)", "value-\(index)"])
            }
            for index in stride(from: 0, to: 60, by: 3) {
                try await run(["put", "key\(index)", "overwritten-\(index)"])
                try await run(["put", "key\(index)", "overwritten-again-\(index)"])
            }
            for index in stride(from: 0, to: 60, by: 5) {
                try await run(["del", "key\(index)"])
            }
            try await run(["del", "key5", "--prefix"])
            try await run(["txn"], standardInput: "\nput txn-a 1\nput txn-b 2\ndel key7\n\n\n")
            try await run(["put", "key0", "recreated"])

            let before = try await Self.observe(etcdctl, historicalRevisions: [1, 30, 61, 90])
            let revision = try #require(before["get  --prefix -w json"]?["header"]?["revision"]?.integerValue)

            let exit = await server.stop()
            #expect(
                exit != ProcessExit(status: 9, signaled: true),
                "the server needed SIGKILL: it did not exit within \(server.options.stopGracePeriod) of SIGTERM"
            )
            try await server.start()

            let after = try await Self.observe(etcdctl, historicalRevisions: [1, 30, 61, 90])
            for (read, value) in before.sorted(by: { $0.key < $1.key }) {
                let differences = EtcdJSON.differences(
                    reference: value,
                    candidate: after[read] ?? .null,
                    referenceName: "before restart",
                    candidateName: "after restart"
                )
                #expect(differences.isEmpty, "etcdctl \(read) changed:\n\(differences.joined(separator: "\n"))")
            }

            let put = try await etcdctl.run("put", "next", "v", "-w", "json")
            try #require(put.succeeded, "\(put)\nserver log:\n\(server.logTail())")
            let next = try JSONValue(parsing: put.standardOutput)["header"]?["revision"]?.integerValue
            #expect(next == revision + 1, "the first put after the restart got revision \(next.map(String.init) ?? "none")")
            let read = try await etcdctl.run("get", "next", "-w", "json")
            let created = try JSONValue(parsing: read.standardOutput)["kvs"]?[0]?["create_revision"]?.integerValue
            #expect(created == revision + 1)
        }
    }

    @Test("every acknowledged write survives SIGKILL, and the revision sequence continues after it")
    func acknowledgedWritesSurviveKill() async throws {
        try await withEtcd(.candidate) { server in
            let etcdctl = server.etcdctl
            for index in 0..<40 {
                try await Self.mustSucceed(etcdctl.run("put", "crash\(index % 25)", "value-\(index)"), server: server)
            }
            try await Self.mustSucceed(etcdctl.run("del", "crash1", "--prefix"), server: server)
            let before = try await Self.observe(etcdctl, historicalRevisions: [20, 41])
            let revision = try #require(before["get  --prefix -w json"]?["header"]?["revision"]?.integerValue)

            await server.kill()
            try await server.start()

            let after = try await Self.observe(etcdctl, historicalRevisions: [20, 41])
            for (read, value) in before.sorted(by: { $0.key < $1.key }) {
                let differences = EtcdJSON.differences(
                    reference: value,
                    candidate: after[read] ?? .null,
                    referenceName: "before SIGKILL",
                    candidateName: "after restart"
                )
                #expect(differences.isEmpty, "etcdctl \(read) changed:\n\(differences.joined(separator: "\n"))")
            }
            let put = try await etcdctl.run("put", "next", "v", "-w", "json")
            try Self.mustSucceed(put, server: server)
            let next = try JSONValue(parsing: put.standardOutput)["header"]?["revision"]?.integerValue
            #expect(next == revision + 1, "the first put after the restart got revision \(next.map(String.init) ?? "none")")
        }
    }

    @Test("after snapshots (--snapshot-count) and SIGKILL, the newest snapshot and the WAL tail recover every write")
    func restartAfterSnapshots() async throws {
        let options = EtcdOptions(extraArguments: ["--snapshot-count=40", "--max-snapshots=2"])
        try await withEtcd(.candidate, options: options) { server in
            let etcdctl = server.etcdctl
            for index in 0..<150 {
                try await Self.mustSucceed(etcdctl.run("put", "snap\(index % 60)", "value-\(index)"), server: server)
            }
            try await Self.mustSucceed(etcdctl.run("del", "snap1", "--prefix"), server: server)
            let before = try await Self.observe(etcdctl, historicalRevisions: [30, 100, 150])

            let snapshots = server.directory.appending("data").appending(path: "member/snap")
            let files = try FileManager.default.contentsOfDirectory(atPath: snapshots.path).filter { $0.hasSuffix(".snap") }
            // Three snapshots were due (at about 40, 80 and 120 entries); --max-snapshots keeps two.
            if server.flavor == .swiftEtcd {
                #expect(files.count == 2, "snapshot files: \(files.sorted())")
            } else {
                #expect(!files.isEmpty, "snapshot files: \(files.sorted())")
            }

            await server.kill()
            try await server.start()
            for phase in ["after SIGKILL", "after a graceful restart"] {
                let after = try await Self.observe(etcdctl, historicalRevisions: [30, 100, 150])
                for (read, value) in before.sorted(by: { $0.key < $1.key }) {
                    let differences = EtcdJSON.differences(
                        reference: value, candidate: after[read] ?? .null,
                        referenceName: "before", candidateName: phase
                    )
                    #expect(differences.isEmpty, "etcdctl \(read) changed \(phase):\n\(differences.joined(separator: "\n"))")
                }
                if phase == "after SIGKILL" {
                    await server.stop()
                    try await server.start()
                }
            }
        }
    }
}
