import Crypto
import EtcdAPI
import EtcdTestSupport
import Foundation
import Testing

/// `etcdctl snapshot save` against both servers, and swift-etcd's `etcdutl snapshot status` and
/// `snapshot restore` for the files it writes.
@Suite("Snapshot save and restore")
struct SnapshotCompatibilityTests {
    /// Whether the file ends with the SHA-256 of everything before it (what etcd appends).
    static func endsWithItsHash(_ url: URL) -> Bool {
        guard let bytes = try? Data(contentsOf: url), bytes.count > 32 else { return false }
        return Data(SHA256.hash(data: bytes.dropLast(32))) == bytes.suffix(32)
    }

    /// Runs the `etcdutl` built with the tests.
    static func etcdutl(_ arguments: [String]) async throws -> (exit: Int32, output: String, error: String) {
        let candidates = ServerFlavor.buildDirectories().map { $0.appendingPathComponent("etcdutl") }
        let executable = try #require(
            candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }, "etcdutl not built")
        return try await withTemporaryDirectory(prefix: "etcdutl") { scratch in
            let output = scratch.appending("stdout")
            let error = scratch.appending("stderr")
            let child = try ChildProcess(executable: executable, arguments: arguments, standardOutput: output, standardError: error)
            let exit = await child.waitForExit(timeout: .seconds(60))
            return (
                exit?.status ?? -1,
                String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self),
                String(decoding: (try? Data(contentsOf: error)) ?? Data(), as: UTF8.self)
            )
        }
    }

    @Test("etcdctl snapshot save writes the backend image followed by its SHA-256, and says where")
    func save() async throws {
        try await expectCompatible("snapshot save", referenceMentions: ["Snapshot saved at"]) { side in
            for index in 0..<20 { try await side.etcdctl(["put", "k\(index)", "v\(index)"], record: false) }
            try await withTemporaryDirectory(prefix: "snapshot") { scratch in
                let file = scratch.appending("saved.db")
                let saved = try await side.etcdctl(["snapshot", "save", file.path], record: false)
                side.record(
                    "etcdctl snapshot save <file>",
                    .text("exit \(saved.exit)\n" + saved.standardOutput.replacingOccurrences(of: file.path, with: "<file>")))
                side.record("the file ends with its SHA-256", .text("\(Self.endsWithItsHash(file))"))
                let missing = try await side.etcdctl(["snapshot", "save"], record: false)
                side.record("etcdctl snapshot save (no path)", .text("exit \(missing.exit)"), errorOutput: missing.standardError)
            }
        }
    }

    @Test("save, restore, start: every key, value and revision, the leases and HashKV are as they were; restore refuses bad input")
    func restore() async throws {
        try await withEtcd(.candidate) { server in
            let etcdctl = server.etcdctl
            let lease = try await etcdctl.run("lease", "grant", "600")
            let leaseID = try #require(lease.standardOutput.split(separator: " ").dropFirst().first.map(String.init))
            for index in 0..<50 { _ = try await etcdctl.run("put", "k\(index % 20)", "v\(index)") }
            _ = try await etcdctl.run("put", "leased", "1", "--lease=\(leaseID)")
            _ = try await etcdctl.run("del", "k3")
            _ = try await etcdctl.run("compact", "10")
            let before = try await etcdctl.run("get", "", "--prefix", "-w", "json")
            let revision = try #require(
                (try JSONValue(parsing: before.standardOutput))["header"]?["revision"]?.integerValue)
            let hashBefore = try await etcdctl.run("endpoint", "hashkv", "--rev=\(revision)", "-w", "json")
            try await withTemporaryDirectory(prefix: "snapshot") { scratch in
                let file = scratch.appending("saved.db")
                let saved = try await etcdctl.run("snapshot", "save", file.path)
                try #require(saved.succeeded, "\(saved)")

                let status = try await Self.etcdutl(["snapshot", "status", file.path, "-w", "json"])
                let parsed = try JSONValue(parsing: status.output)
                #expect(parsed["revision"]?.integerValue == revision, "\(status)")
                #expect((parsed["totalKey"]?.integerValue ?? 0) > 20, "\(status)")

                // Refusals: a data directory that exists, a damaged file, a file without a hash.
                let peerURL = "http://127.0.0.1:\(server.peerPort)"
                let flags = ["--name=member0", "--initial-cluster=member0=\(peerURL)", "--initial-advertise-peer-urls=\(peerURL)"]
                let exists = try await Self.etcdutl(["snapshot", "restore", file.path, "--data-dir=\(server.dataDirectory.path)"] + flags)
                #expect(exists.exit != 0 && exists.error.contains("exists"), "\(exists)")
                var damaged = try Data(contentsOf: file)
                damaged[100] ^= 0xff
                let damagedFile = scratch.appending("damaged.db")
                try damaged.write(to: damagedFile)
                let bad = try await Self.etcdutl(
                    ["snapshot", "restore", damagedFile.path, "--data-dir=\(scratch.appending("bad").path)"] + flags)
                #expect(bad.exit != 0 && bad.error.contains("expected sha256"), "\(bad)")
                let bareFile = scratch.appending("bare.db")
                try Data(try Data(contentsOf: file).dropLast(32)).write(to: bareFile)
                let bare = try await Self.etcdutl(
                    ["snapshot", "restore", bareFile.path, "--data-dir=\(scratch.appending("bare").path)"] + flags)
                #expect(bare.exit != 0 && bare.error.contains("snapshot missing hash but --skip-hash-check=false"), "\(bare)")
                let wrongName = try await Self.etcdutl(
                    ["snapshot", "restore", file.path, "--data-dir=\(scratch.appending("wrong").path)", "--name=other"]
                        + flags.dropFirst())
                #expect(wrongName.exit != 0 && wrongName.error.contains("couldn't find local name"), "\(wrongName)")

                // The member's data is replaced by the restored snapshot, then it starts again.
                _ = await server.stop()
                try FileManager.default.removeItem(at: server.dataDirectory)
                let restored = try await Self.etcdutl(
                    ["snapshot", "restore", file.path, "--data-dir=\(server.dataDirectory.path)"] + flags)
                try #require(restored.exit == 0, "\(restored)")
                try await server.start()
            }
            let after = try await etcdctl.run("get", "", "--prefix", "-w", "json")
            let kvs = { (text: String) in (try? JSONValue(parsing: text))?["kvs"] }
            #expect(kvs(after.standardOutput) == kvs(before.standardOutput))
            let hashAfter = try await etcdctl.run("endpoint", "hashkv", "--rev=\(revision)", "-w", "json")
            let hash = { (text: String) in (try? JSONValue(parsing: text))?[0]?["HashKV"]?["hash"] }
            #expect(hash(hashAfter.standardOutput) != nil && hash(hashAfter.standardOutput) == hash(hashBefore.standardOutput))
            // History before the compaction is gone; the lease and its key came along.
            let old = try await etcdctl.run("get", "k0", "--rev=5")
            #expect(old.standardError.contains("required revision has been compacted"), "\(old)")
            let ttl = try await etcdctl.run("lease", "timetolive", leaseID, "--keys")
            #expect(ttl.standardOutput.contains("attached keys([leased])"), "\(ttl)")
            // A new cluster of one, taking writes after the restored revision.
            let members = try await etcdctl.run("member", "list")
            #expect(members.standardOutput.split(separator: "\n").count == 1, "\(members)")
            let put = try await etcdctl.run("put", "after", "1", "-w", "json")
            #expect((try JSONValue(parsing: put.standardOutput))["header"]?["revision"]?.integerValue == revision + 1)
        }
    }
}

extension SnapshotCompatibilityTests {
    @Test("a three-member cluster restored from one member's snapshot: one leader, the same keys at the same revisions, equal HashKV")
    func restoreCluster() async throws {
        try await withEtcdCluster(.candidate) { cluster in
            let etcdctl = cluster.etcdctl()
            for index in 0..<30 { #expect(try await etcdctl.run("put", "k\(index % 10)", "v\(index)").succeeded) }
            let before = try await etcdctl.run("get", "", "--prefix", "-w", "json")
            let revision = try #require((try JSONValue(parsing: before.standardOutput))["header"]?["revision"]?.integerValue)
            try await withTemporaryDirectory(prefix: "snapshot") { scratch in
                let file = scratch.appending("saved.db")
                let saved = try await cluster.etcdctl([cluster.members[0]]).run("snapshot", "save", file.path)
                try #require(saved.succeeded, "\(saved)")
                for member in cluster.members { _ = await cluster.stop(member) }
                let initialCluster = cluster.members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
                for member in cluster.members {
                    let directory = cluster.dataDirectory(of: member)
                    try FileManager.default.removeItem(at: directory)
                    let restored = try await Self.etcdutl([
                        "snapshot", "restore", file.path, "--data-dir=\(directory.path)", "--name=\(member.name)",
                        "--initial-cluster=\(initialCluster)", "--initial-cluster-token=\(cluster.token)",
                        "--initial-advertise-peer-urls=\(member.peerURL)",
                    ])
                    try #require(restored.exit == 0, "\(restored)")
                }
            }
            for member in cluster.members { try await cluster.restart(member, wait: false) }
            try await cluster.waitUntilHealthy()
            #expect(try await cluster.leader() != nil)
            let after = try await etcdctl.run("get", "", "--prefix", "-w", "json")
            let kvs = { (text: String) in (try? JSONValue(parsing: text))?["kvs"] }
            #expect(kvs(after.standardOutput) == kvs(before.standardOutput))
            let hashes = try await ClusterTests.hashKVs(etcdctl, revision: revision)
            #expect(hashes.count == 3 && Set(hashes).count == 1, "\(hashes)")
            let members = try await etcdctl.run("member", "list")
            #expect(members.standardOutput.split(separator: "\n").count == 3, "\(members)")
            #expect(try await etcdctl.run("put", "after", "restore").succeeded)
        }
    }
}
