import EtcdTestSupport
import Foundation
import Testing

/// etcd's flags against the binaries: what etcd's parser refuses is refused with the same message
/// and exit code, flags not built yet do not stop a typical harness command line, flags unsafe to
/// ignore stop ours, and etcd's YAML config file starts a member.
@Suite("etcd flags")
struct FlagsCompatibilityTests {
    @Test(
        "a value etcd's flag parser refuses exits 2 with Go's message on both servers",
        arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate]
    )
    func parseErrors(flavor: ServerFlavor) async throws {
        let cases: [(String, String)] = [
            ("--bogus-flag", "flag provided but not defined: -bogus-flag"),
            ("--quota-backend-bytes=abc", "invalid value \"abc\" for flag -quota-backend-bytes: parse error"),
            ("--initial-cluster-state=foo", "invalid value \"foo\" for flag -initial-cluster-state: invalid value"),
            (
                "--max-concurrent-streams=-1",
                "invalid value \"-1\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"-1\": invalid syntax"
            ),
            ("--grpc-keepalive-min-time=5", "invalid value \"5\" for flag -grpc-keepalive-min-time: parse error"),
        ]
        for (argument, message) in cases {
            let (exit, output) = try await RaftFlagsTests.refusedStart(flavor, [argument])
            #expect(exit == ProcessExit(status: 2, signaled: false), "\(flavor) \(argument): \(exit.map { "\($0)" } ?? "none")")
            #expect(output.contains(message), "\(flavor) \(argument): \(output.suffix(600))")
        }
    }

    @Test("an unknown auto-compaction mode is refused after parsing with etcd's message", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func autoCompactionMode(flavor: ServerFlavor) async throws {
        let (exit, output) = try await RaftFlagsTests.refusedStart(flavor, ["--auto-compaction-mode=foo"])
        #expect(exit == ProcessExit(status: 1, signaled: false), "\(flavor): \(output.suffix(600))")
        #expect(output.contains("unknown auto-compaction-mode \"foo\""), "\(flavor): \(output.suffix(600))")
    }

    @Test("a flag unsafe or surprising to ignore stops swift-etcd at start with a message naming it")
    func refusedFlags() async throws {
        let refusals = [
            "--enable-v2", "--force-new-cluster", "--listen-client-urls=unix://127.0.0.1:0",
        ]
        for argument in refusals {
            let flag = String(argument.prefix { $0 != "=" })
            let (exit, output) = try await RaftFlagsTests.refusedStart(.swiftEtcd, [argument])
            #expect(exit == ProcessExit(status: 1, signaled: false), "\(argument): \(output.suffix(600))")
            #expect(output.contains("\(flag)") && output.contains("is not supported yet"), "\(argument): \(output.suffix(600))")
        }
    }

    /// A harness-style command line (single member, as etcd's Procfile and e2e tests start one).
    static let harnessFlags = [
        "--initial-cluster-token=etcd-cluster-1", "--initial-cluster-state=new", "--snapshot-count=10000",
        "--heartbeat-interval=100", "--election-timeout=1000", "--experimental-initial-corrupt-check",
        "--quota-backend-bytes=8589934592", "--auto-compaction-mode=periodic", "--auto-compaction-retention", "1",
        "--enable-v2=false", "--max-concurrent-streams", "100", "--strict-reconfig-check", "--grpc-keepalive-min-time=5s",
        "-enable-pprof=false", "--logger=zap", "--log-outputs=stderr",
    ]

    @Test("a typical etcd test-harness command line starts the server and it serves", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func harnessCommandLine(flavor: ServerFlavor) async throws {
        try await withEtcd(flavor, options: EtcdOptions(extraArguments: Self.harnessFlags)) { server in
            let put = try await server.etcdctl.run("put", "flags", "accepted")
            try #require(put.succeeded, "\(put)\n\(server.logTail())")
            let get = try await server.etcdctl.run("get", "flags", "--print-value-only")
            #expect(get.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "accepted")
            // etcd 3.4's zap logger does not always print its ready line, so only ours is checked.
            if flavor == .swiftEtcd {
                let log = server.logTail(lines: 400)
                #expect(log.contains("ready to serve client requests"), "\(log)")
                #expect(log.contains("enabled backend quota") && log.contains("quota-size-bytes=8589934592"), "\(log)")
                #expect(log.contains("published local member to cluster"), "\(log)")
                #expect(log.contains("serving insecure client requests on 127.0.0.1:\(server.clientPort)"), "\(log)")
                #expect(log.contains("etcd Version: 3.5"), "\(log)")
            }
        }
    }

    @Test("an etcd YAML config file starts a member with its values; the other flags are ignored", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func configFile(flavor: ServerFlavor) async throws {
        let directory = try TemporaryDirectory(prefix: "etcd-config-file")
        defer { directory.remove() }
        let clientPort = try LoopbackPort.allocate()
        let peerPort = try LoopbackPort.allocate()
        let config = """
            name: 'from-file'
            data-dir: \(directory.appending("data").path)
            listen-client-urls: http://127.0.0.1:\(clientPort)
            advertise-client-urls: http://127.0.0.1:\(clientPort)
            listen-peer-urls: http://127.0.0.1:\(peerPort)
            initial-advertise-peer-urls: http://127.0.0.1:\(peerPort)
            initial-cluster: from-file=http://127.0.0.1:\(peerPort)
            initial-cluster-state: 'new'
            initial-cluster-token: 'etcd-cluster'
            snapshot-count: 10000
            enable-v2: false
            strict-reconfig-check: true
            client-transport-security:
              client-cert-auth: false
              auto-tls: false
            peer-transport-security:
              client-cert-auth: false
              auto-tls: false
            log-level: info
            logger: zap
            log-outputs: [stderr]
            """
        let configPath = directory.appending("etcd.conf.yml")
        try config.write(to: configPath, atomically: true, encoding: .utf8)
        let log = directory.appending("out.log")
        let child = try ChildProcess(
            executable: try flavor.executable(),
            arguments: ["--config-file", configPath.path, "--name=ignored-by-etcd"],
            standardOutput: log,
            standardError: log
        )
        let etcdctl = Etcdctl(endpoints: "127.0.0.1:\(clientPort)", timeout: .seconds(5))
        let served = try await poll(timeout: .seconds(20), interval: .milliseconds(50)) {
            guard child.exitStatus == nil else { return true }
            guard LoopbackPort.isAccepting(port: clientPort) else { return false }
            return try await etcdctl.run("put", "from", "file").succeeded
        }
        let members = try await etcdctl.run("member", "list")
        _ = await child.terminate(gracePeriod: .seconds(10))
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(served && child.exitStatus != nil, "\(flavor): \(output.suffix(800))")
        #expect(members.standardOutput.contains("from-file"), "\(flavor): \(members)\n\(output.suffix(800))")
    }
}
