import Foundation
import Testing

@testable import EtcdServer

@Suite("etcd's flags")
struct FlagTests {
    static func parse(_ arguments: [String], environment: [String: String] = [:], file: String = "") throws(FlagError) -> FlagValues {
        try FlagParser.parse(arguments: arguments, environment: environment) { _ in file }
    }

    /// A value of the flag's type other than its default.
    static func representative(_ spec: FlagSpec) -> String {
        switch spec.kind {
        case .string: return "some-value"
        case .bool: return FlagValues.parseBool(spec.defaultValue) == true ? "false" : "true"
        case .unsigned, .unsigned32, .integer: return "7"
        case .duration: return "3s"
        case .urls: return "http://127.0.0.1:2399"
        case .strings: return "a,b"
        case .choice(let valid): return valid.last { $0 != spec.defaultValue } ?? spec.defaultValue
        }
    }

    @Test("every flag of the table parses with one dash, two dashes, a separate value and ETCD_*")
    func everyFlagParses() throws {
        for spec in FlagTable.all where spec.name != "config-file" {
            let value = Self.representative(spec)
            var forms: [([String], [String: String])] = [
                (["--\(spec.name)=\(value)"], [:]),
                (["-\(spec.name)=\(value)"], [:]),
                ([], [EnvironmentFlags.environmentName(of: spec.name): value]),
            ]
            if spec.kind != .bool { forms.append((["--\(spec.name)", value], [:])) }
            for (arguments, environment) in forms where !(spec.name == "version" && arguments.isEmpty) {
                let values = try Self.parse(arguments, environment: environment)
                #expect(values.isSet(spec.name), "\(spec.name) from \(arguments) \(environment)")
                #expect(FlagValues.sameValue(values[spec.name], value, kind: spec.kind), "\(spec.name): \(values[spec.name])")
            }
        }
    }

    @Test("every default parses as its own flag's type, and names are unique")
    func defaultsParse() throws {
        #expect(Set(FlagTable.all.map(\.name)).count == FlagTable.all.count)
        for spec in FlagTable.all where !spec.defaultValue.isEmpty && !spec.defaultValue.hasPrefix("${") {
            #expect(throws: Never.self, "\(spec.name)") { try FlagValues.checked(spec.defaultValue, spec: spec) }
        }
    }

    @Test("a bare boolean means true; a boolean never takes the next argument, as in Go")
    func bareBooleans() throws {
        let values = try Self.parse(["--pre-vote", "-unsafe-no-fsync", "--strict-reconfig-check=false"])
        #expect(values["pre-vote"] == "true" && values["unsafe-no-fsync"] == "true")
        #expect(values["strict-reconfig-check"] == "false")
        #expect(throws: FlagError.notAFlag("false")) { try Self.parse(["--pre-vote", "false"]) }
    }

    @Test("malformed values are refused with Go's flag messages, as etcd prints them")
    func parseErrors() {
        let cases: [([String], String)] = [
            (["--bogus-flag"], "flag provided but not defined: -bogus-flag"),
            (["--pre-vote=maybe"], "invalid boolean value \"maybe\" for -pre-vote: parse error"),
            (["--quota-backend-bytes=abc"], "invalid value \"abc\" for flag -quota-backend-bytes: parse error"),
            (["--snapshot-count=-1"], "invalid value \"-1\" for flag -snapshot-count: parse error"),
            (["--grpc-keepalive-min-time=5"], "invalid value \"5\" for flag -grpc-keepalive-min-time: parse error"),
            (
                ["--max-concurrent-streams=-1"],
                "invalid value \"-1\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"-1\": invalid syntax"
            ),
            (["--initial-cluster-state=foo"], "invalid value \"foo\" for flag -initial-cluster-state: invalid value"),
            (["--proxy=foo"], "invalid value \"foo\" for flag -proxy: invalid value"),
            (["--listen-client-urls=ftp://x:1"], "invalid value \"ftp://x:1\" for flag -listen-client-urls: URL scheme"),
            (["--name"], "flag needs an argument: -name"),
            (["stray"], "\"stray\" is not a valid flag"),
        ]
        for (arguments, message) in cases {
            do {
                _ = try Self.parse(arguments)
                Issue.record("\(arguments) was accepted")
            } catch {
                #expect(error.description.hasPrefix(message), "\(arguments): \(error)")
            }
        }
        #expect(throws: FlagError.invalidEnvironment(variable: "ETCD_SNAPSHOT_COUNT", value: "x", reason: "parse error")) {
            try Self.parse([], environment: ["ETCD_SNAPSHOT_COUNT": "x"])
        }
    }

    @Test("ETCD_* fills flags the command line left out; shadowed and unknown variables are reported")
    func environment() throws {
        let values = try Self.parse(
            ["--name", "cli"],
            environment: ["ETCD_NAME": "env", "ETCD_DATA_DIR": "/data", "ETCD_UNKNOWN_THING": "1", "ETCDCTL_API": "3", "PATH": "/bin"]
        )
        #expect(values["name"] == "cli" && values["data-dir"] == "/data")
        #expect(values.warnings.count == 2, "\(values.warnings)")
        #expect(values.warnings.contains("unrecognized environment variable ETCD_UNKNOWN_THING"))
    }

    @Test("flags become the server's typed configuration with etcd's defaults")
    func typedConfiguration() throws {
        let defaults = try ServerConfiguration(flags: Self.parse([]))
        #expect(defaults.compactionBatchLimit == 1000 && defaults.compactionSleepInterval == .milliseconds(10))
        #expect(defaults.quotaBackendBytes == 0 && defaults.maxConcurrentStreams == .max && defaults.autoCompaction == nil)
        #expect(defaults.grpcKeepaliveMinTime == .seconds(5) && defaults.grpcKeepaliveInterval == .seconds(7_200))
        #expect(defaults.backendBatchIntervalMilliseconds == 100 && defaults.dataDirectory == nil && defaults.initialCluster == nil)
        #expect(defaults.strictReconfigCheck && defaults.authToken == "simple" && defaults.bcryptCost == 10)

        let set = try ServerConfiguration(
            flags: Self.parse([
                "--quota-backend-bytes=8589934592", "--auto-compaction-retention=1", "--max-concurrent-streams=100",
                "--experimental-compaction-batch-limit=50", "--experimental-compaction-sleep-interval=1ms",
                "--backend-batch-interval=10ms", "--listen-metrics-urls=http://127.0.0.1:2381", "--strict-reconfig-check=false",
            ]))
        #expect(set.quotaBackendBytes == 8_589_934_592 && set.maxConcurrentStreams == 100)
        #expect(set.autoCompaction == .periodic(.seconds(3_600)), "a bare number is hours, as etcd reads it")
        #expect(set.compactionBatchLimit == 50 && set.compactionSleepInterval == .milliseconds(1))
        #expect(set.backendBatchIntervalMilliseconds == 10 && set.listenMetricsURLs.count == 1 && !set.strictReconfigCheck)
    }

    @Test("auto compaction and auth settings are checked with etcd's messages")
    func validation() throws {
        #expect(try ServerConfiguration.autoCompaction(mode: "periodic", retention: "30m") == .periodic(.seconds(1_800)))
        #expect(try ServerConfiguration.autoCompaction(mode: "revision", retention: "1000") == .revision(1_000))
        #expect(try ServerConfiguration.autoCompaction(mode: "revision", retention: "0") == nil)
        #expect(throws: ConfigurationError.invalid("unknown auto-compaction-mode \"foo\"")) {
            try ServerConfiguration(flags: Self.parse(["--auto-compaction-mode=foo"]))
        }
        #expect(throws: ConfigurationError.invalid("error parsing CompactionRetention: time: invalid duration \"abc\"")) {
            try ServerConfiguration(flags: Self.parse(["--auto-compaction-retention=abc"]))
        }
        #expect(throws: ConfigurationError.self) { try ServerConfiguration(flags: Self.parse(["--auth-token=foo"])) }
        #expect(throws: ConfigurationError.self) { try ServerConfiguration(flags: Self.parse(["--bcrypt-cost=3"])) }
        _ = try ServerConfiguration(flags: Self.parse(["--auth-token=jwt,sign-method=RS256,priv-key=/k,ttl=10m"]))
        #expect(throws: ConfigurationError.self) { try ServerConfiguration(flags: Self.parse(["--auth-token=jwt,priv-key=/k"])) }
        #expect(throws: ConfigurationError.self) { try ServerConfiguration(flags: Self.parse(["--auth-token=jwt,sign-method"])) }
        #expect(try ServerConfiguration(flags: Self.parse(["--auth-token-ttl=0"])).authTokenTTLSeconds == 300)
    }

    @Test("a flag whose feature is missing warns once when set otherwise than the default, and never at the default")
    func notYetEffective() throws {
        let notices = try ServerConfiguration.startupNotices(
            Self.parse(["--socket-reuse-port=true", "--quota-backend-bytes=8589934592", "--enable-v2=false", "--strict-reconfig-check", "--logger=zap", "--log-outputs=stderr", "--grpc-keepalive-interval=2h0m0s"]))
        #expect(notices.count == 1, "\(notices)")
        #expect(notices.first?.contains("--socket-reuse-port=true") == true)
        #expect(notices.first?.contains("no effect yet") == true)
    }

    @Test("flags unsafe or surprising to ignore refuse to start, naming the flag")
    func refused() throws {
        let refusals: [[String]] = [
            ["--force-new-cluster"], ["--enable-v2"], ["--proxy=on"],
            ["--discovery=https://discovery.etcd.io/x"], ["--discovery-srv=example.com"],
            ["--listen-client-urls=unix://sock:0"], ["--listen-peer-urls=unixs://sock:0"],
        ]
        for arguments in refusals {
            let flag = String(arguments[0].dropFirst(2).prefix { $0 != "=" })
            do {
                _ = try ServerConfiguration.startupNotices(Self.parse(arguments))
                Issue.record("\(arguments) was accepted")
            } catch {
                #expect("\(error)".contains("--\(flag)") && "\(error)".contains("not supported yet"), "\(error)")
            }
        }
    }

    /// Modelled on etcd's `etcd.conf.yml.sample`.
    static let sampleConfig = """
        # This is the configuration file for the etcd server.
        name: 'sample'
        data-dir: /var/lib/etcd-sample
        wal-dir:
        snapshot-count: 10000
        heartbeat-interval: 100
        election-timeout: 1000
        quota-backend-bytes: 0
        listen-peer-urls: http://localhost:2380
        listen-client-urls: http://127.0.0.1:2379,http://127.0.0.1:22379
        max-snapshots: 5
        max-wals: 5
        cors:
        initial-advertise-peer-urls: http://localhost:2380
        advertise-client-urls: http://127.0.0.1:2379
        discovery:
        discovery-fallback: 'proxy'
        initial-cluster:
        initial-cluster-token: 'etcd-cluster'
        initial-cluster-state: 'new'
        strict-reconfig-check: false
        enable-v2: false
        enable-pprof: true
        proxy: 'off'
        client-transport-security:
          cert-file:
          key-file:
          client-cert-auth: false
          trusted-ca-file:
          auto-tls: false
        peer-transport-security:
          cert-file:
          key-file:
          client-cert-auth: false
          trusted-ca-file:
          auto-tls: false
        self-signed-cert-validity: 1
        log-level: debug
        logger: zap
        log-outputs: [stderr]
        force-new-cluster: false
        auto-compaction-mode: periodic
        auto-compaction-retention: "1"
        experimental-watch-progress-notify-interval: 5000000000
        """

    @Test("a config file like etcd's sample sets the flags, and other flags and variables are then ignored")
    func configFile() throws {
        let values = try Self.parse(
            ["--config-file=/etc/etcd.yml", "--name=ignored"], environment: ["ETCD_SNAPSHOT_COUNT": "5"], file: Self.sampleConfig)
        #expect(values.configFile == "/etc/etcd.yml")
        #expect(values["name"] == "sample" && values["snapshot-count"] == "10000")
        #expect(values["log-outputs"] == "stderr" && values["log-level"] == "debug")
        #expect(values["strict-reconfig-check"] == "false" && values["auto-tls"] == "false" && values.isSet("peer-auto-tls"))
        #expect(values.warnings.contains { $0.contains("other configuration command line flags and environment variables will be ignored") })
        let configuration = try ServerConfiguration(flags: values)
        #expect(configuration.dataDirectory == "/var/lib/etcd-sample" && configuration.listenClientURLs.count == 2)
        #expect(configuration.watchProgressNotifyInterval == .seconds(5), "a duration in the file counts nanoseconds, as etcd's")
        #expect(configuration.autoCompaction == .periodic(.seconds(3_600)) && configuration.initialCluster == nil)
        let notices = try ServerConfiguration.startupNotices(values)
        #expect(notices.count == 1, "\(notices)")  // enable-pprof

        let fromEnvironment = try Self.parse([], environment: ["ETCD_CONFIG_FILE": "/e.yml"], file: "name: env-file\n")
        #expect(fromEnvironment["name"] == "env-file")
    }

    @Test("TLS settings in a config file reach the configuration; a malformed file is refused with its path")
    func configFileRefusals() throws {
        let tls = try Self.parse(
            ["--config-file=t.yml"],
            file: "client-transport-security:\n  cert-file: /tls/s.crt\n  key-file: /tls/s.key\n  client-cert-auth: true\n"
                + "peer-transport-security:\n  allowed-cn: infra1,infra2\n")
        #expect(try ServerConfiguration.startupNotices(tls).isEmpty)
        let configuration = try ServerConfiguration(flags: tls)
        #expect(configuration.clientTLS.certFile == "/tls/s.crt" && configuration.clientTLS.clientCertAuth)
        #expect(configuration.peerTLS.allowedCommonNames == ["infra1", "infra2"])
        #expect(throws: FlagError.self) { try Self.parse(["--config-file=b.yml"], file: "snapshot-count: many\n") }
        #expect(throws: FlagError.self) { try Self.parse(["--config-file=b.yml"], file: "- just\n- a list\n") }
    }

    @Test("the README's Flags section names every flag of the table")
    func readmeListsEveryFlag() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appending(path: "README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "## Flags")).upperBound
        let flagsText = readme[section...].prefix { _ in true }
        let end = flagsText.range(of: "\n## ")?.lowerBound ?? flagsText.endIndex
        let body = String(flagsText[..<end])
        for spec in FlagTable.all {
            #expect(body.contains("`--\(spec.name)`"), "README's Flags section does not name --\(spec.name)")
        }
    }
}
