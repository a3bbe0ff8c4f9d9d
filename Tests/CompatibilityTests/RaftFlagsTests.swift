import EtcdTestSupport
import Foundation
import Testing

/// The Raft and WAL flags, run against the binaries: what etcd refuses at start is refused the same
/// way, and `--wal-dir` moves the WAL where etcd would put it.
@Suite("Raft and WAL flags")
struct RaftFlagsTests {
    /// Runs the server with `arguments` (plus a fresh data directory) and returns its exit and
    /// output; the server is expected to refuse to start.
    static func refusedStart(_ flavor: ServerFlavor, _ arguments: [String]) async throws -> (ProcessExit?, String) {
        let directory = try TemporaryDirectory(prefix: "etcd-flags")
        defer { directory.remove() }
        let log = directory.appending("out.log")
        let child = try ChildProcess(
            executable: try flavor.executable(),
            arguments: ["--data-dir", directory.appending("data").path] + arguments,
            standardOutput: log,
            standardError: log
        )
        guard let exit = await child.waitForExit(timeout: .seconds(20)) else {
            _ = await child.kill()
            return (nil, "still running after 20 s")
        }
        return (exit, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    @Test(
        "an election timeout under five heartbeats is refused at start with etcd's message",
        arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate]
    )
    func electionTimeoutTooShort(flavor: ServerFlavor) async throws {
        let (exit, output) = try await Self.refusedStart(flavor, ["--election-timeout=300", "--heartbeat-interval=100"])
        #expect(exit != nil && exit != ProcessExit(status: 0, signaled: false), "\(flavor): \(output)")
        #expect(
            output.contains("--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
            "\(flavor): \(output)"
        )
    }

    @Test("a boolean flag with a value Go cannot parse is refused", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func badBoolean(flavor: ServerFlavor) async throws {
        let (exit, output) = try await Self.refusedStart(flavor, ["--pre-vote=maybe"])
        #expect(exit != nil && exit != ProcessExit(status: 0, signaled: false), "\(flavor): \(output)")
        #expect(output.contains("invalid boolean value \"maybe\" for -pre-vote"), "\(flavor): \(output)")
    }

    @Test("--wal-dir keeps the WAL in its own directory, and a restart after SIGKILL reads it from there")
    func walDirectory() async throws {
        let walRoot = try TemporaryDirectory(prefix: "etcd-waldir")
        defer { walRoot.remove() }
        let walDirectory = walRoot.appending("wal")
        let options = EtcdOptions(extraArguments: ["--wal-dir=\(walDirectory.path)", "--pre-vote", "--unsafe-no-fsync=false"])
        try await withEtcd(.candidate, options: options) { server in
            for index in 0..<10 {
                let put = try await server.etcdctl.run("put", "wal\(index)", "v\(index)")
                try #require(put.succeeded, "\(put)\n\(server.logTail())")
            }
            let segments = try FileManager.default.contentsOfDirectory(atPath: walDirectory.path).filter { $0.hasSuffix(".wal") }
            #expect(!segments.isEmpty, "no WAL segment in --wal-dir")
            let memberWAL = server.directory.appending("data").appending(path: "member/wal").path
            #expect(!FileManager.default.fileExists(atPath: memberWAL), "a WAL was also made under the data directory")

            await server.kill()
            try await server.start()
            let read = try await server.etcdctl.run("get", "wal", "--prefix", "--keys-only")
            try #require(read.succeeded, "\(read)\n\(server.logTail())")
            #expect(read.standardOutput.split(separator: "\n").filter { !$0.isEmpty }.count == 10)
        }
    }
}
