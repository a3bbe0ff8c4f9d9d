import EtcdTestSupport
import Foundation
import Testing

/// TLS on the client port, side by side with real etcd on the same certificates (made with the
/// openssl command line for each test): etcdctl and curl with client certificates, the clients
/// etcd refuses (no certificate, another CA, a revoked one, plaintext), `--auto-tls`, start-up
/// errors; then swift-etcd alone where etcd 3.4 cannot be the reference (http and https on one
/// port) and a three-member cluster with peer TLS.
@Suite("TLS compatibility with real etcd")
struct TLSCompatibilityTests {
    /// Bounded failures: a refused client gives up after these.
    static let failFast = ["--dial-timeout=2s", "--command-timeout=3s"]

    @Test("mTLS: etcdctl and curl with a client certificate work alike; no certificate, another CA, a revoked one and plaintext are refused alike")
    func clientCertificates() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let options = EtcdOptions(
                extraArguments: tls.serverFlags + ["--client-crl-file=\(tls.crlFile)"], clientSchemes: ["https"],
                etcdctlArguments: tls.etcdctlFlags(as: "alice"))
            try await expectCompatible(
                "client TLS with client certificates", options: options,
                referenceMentions: ["context deadline exceeded"], knownDifference: GatewayCompatibilityTests.etcd34Versus35
            ) { side in
                try await side.etcdctl("put", "greeting", "hello")
                try await side.etcdctl("get", "greeting", "-w", "json")
                try await side.etcdctl("get", "greeting", "--print-value-only")
                try await side.etcdctl("del", "greeting", "--prev-kv")
                // Refused clients: no certificate, another CA's, a revoked one, plaintext.
                try await Self.record(side, as: tls.etcdctlFlags(as: nil), "without a client certificate")
                try await Self.record(side, as: tls.etcdctlFlags(as: "mallory"), "with another CA's certificate")
                try await Self.record(side, as: tls.etcdctlFlags(as: "bob"), "with a revoked certificate")
                try await Self.record(side, as: [], "in plaintext")
                // The HTTP endpoints and the gateway over TLS (curl offers h2 and HTTP/1.1).
                try await side.http("GET", "/health", curlArguments: tls.curlFlags(as: "alice"))
                try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy"}"#, curlArguments: tls.curlFlags())
                try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v"}"#, curlArguments: tls.curlFlags())
                // Without a client certificate there is no HTTP answer (curl's wording of the
                // TLS alert depends on the server's TLS library, so only that is compared).
                let refused = try await Curl.request("GET", url: side.server.clientURL + "/health", extraArguments: tls.curlFlags(as: nil))
                side.record("curl /health without a client certificate", .text("HTTP status \(refused.status)"))
                let plaintext = try await Curl.request(
                    "GET", url: "http://\(side.server.clientEndpoint)/health", extraArguments: [])
                side.record("curl http:// to the https port", .text("HTTP status \(plaintext.status)"))
            }
        }
    }

    @Test("with auth on and --client-cert-auth, the verified certificate's CommonName is the user of calls without a token")
    func commonNameIdentity() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let options = EtcdOptions(extraArguments: tls.serverFlags, clientSchemes: ["https"], etcdctlArguments: tls.etcdctlFlags())
            try await expectCompatible(
                "client certificate CommonName as the user", options: options,
                referenceMentions: ["permission denied", "CommonName of client sending a request against gateway"],
                knownDifference: GatewayCompatibilityTests.etcd34Versus35
            ) { side in
                try await side.etcdctl("user", "add", "root", "--new-user-password=rootpw")
                try await side.etcdctl("user", "add", "alice", "--new-user-password=alicepw")
                try await side.etcdctl("role", "add", "app")
                try await side.etcdctl("role", "grant-permission", "app", "readwrite", "a", "--prefix")
                try await side.etcdctl("user", "grant-role", "alice", "app")
                try await side.etcdctl("auth", "enable")
                try await side.etcdctl("put", "a1", "by-alice")
                try await side.etcdctl("get", "a1", "--print-value-only")
                try await side.etcdctl("put", "b1", "refused")
                try await side.etcdctl("--user=root:rootpw", "put", "b1", "by-root")
                // The gateway refuses a certificate with a CommonName while auth is on; other
                // HTTP endpoints serve it.
                try await side.http("POST", "/v3/kv/range", body: #"{"key":"YTE="}"#, curlArguments: tls.curlFlags())
                try await side.http("GET", "/health", curlArguments: tls.curlFlags())
                try await side.etcdctl("--user=root:rootpw", "auth", "disable")
                try await side.http("POST", "/v3/kv/range", body: #"{"key":"YTE="}"#, curlArguments: tls.curlFlags())
            }
        }
    }

    @Test("--auto-tls: a self-signed certificate in the data directory's fixtures/client, used with etcdctl --insecure-skip-tls-verify")
    func autoTLS() async throws {
        let options = EtcdOptions(
            extraArguments: ["--auto-tls"], clientSchemes: ["https"],
            etcdctlArguments: ["--insecure-transport=false", "--insecure-skip-tls-verify"])
        try await expectCompatible("auto TLS", options: options) { side in
            try await side.etcdctl("put", "k", "v")
            try await side.etcdctl("get", "k", "-w", "json")
            let fixtures = side.server.dataDirectory.appendingPathComponent("fixtures/client")
            let certificate = fixtures.appendingPathComponent("cert.pem").path
            side.record(
                "fixtures/client holds cert.pem and key.pem",
                .text("\(FileManager.default.fileExists(atPath: certificate)) \(FileManager.default.fileExists(atPath: fixtures.appendingPathComponent("key.pem").path))"))
            for field in ["-subject", "-issuer"] {
                side.record("openssl x509 \(field)", .text(try await Self.opensslX509(certificate, [field])))
            }
            let text = try await Self.opensslX509(certificate, ["-text"])
            for fact in ["IP Address:127.0.0.1", "NIST CURVE: P-521", "TLS Web Server Authentication", "CA:FALSE"] {
                side.record("certificate mentions \(fact)", .text("\(text.contains(fact))"))
            }
        }
    }

    @Test("TLS settings etcd refuses at start are refused alike", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func startupErrors(flavor: ServerFlavor) async throws {
        let httpsWithoutCertificate = try await RaftFlagsTests.refusedStart(
            flavor, ["--listen-client-urls=https://127.0.0.1:0", "--advertise-client-urls=https://127.0.0.1:0"])
        #expect(httpsWithoutCertificate.0 != nil && httpsWithoutCertificate.0 != ProcessExit(status: 0, signaled: false))
        #expect(
            httpsWithoutCertificate.1.contains(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme"),
            "\(flavor): \(httpsWithoutCertificate.1.suffix(800))")
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let badCipher = try await RaftFlagsTests.refusedStart(
                flavor,
                [
                    "--listen-client-urls=https://127.0.0.1:0", "--advertise-client-urls=https://127.0.0.1:0",
                    "--cert-file=\(tls.serverCert)", "--key-file=\(tls.serverKey)", "--cipher-suites=TLS_NOT_A_SUITE",
                ])
            #expect(badCipher.0 != nil && badCipher.0 != ProcessExit(status: 0, signaled: false))
            #expect(badCipher.1.contains("unexpected TLS cipher suite \"TLS_NOT_A_SUITE\""), "\(flavor): \(badCipher.1.suffix(800))")
        }
    }

    @Test("--cipher-suites with Go's names: etcdctl connects with a suite on the list")
    func cipherSuites() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
            let options = EtcdOptions(
                extraArguments: tls.serverFlags + ["--cipher-suites=\(suites)"], clientSchemes: ["https"],
                etcdctlArguments: tls.etcdctlFlags())
            try await expectCompatible("cipher suites", options: options) { side in
                try await side.etcdctl("put", "k", "v")
                try await side.etcdctl("get", "k", "--print-value-only")
            }
        }
    }

    @Test("http and https on one port (as etcd 3.5 serves them): plaintext and TLS gRPC and HTTP both work")
    func mixedPort() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let options = EtcdOptions(
                extraArguments: tls.serverFlags, clientSchemes: ["https", "http"], etcdctlArguments: tls.etcdctlFlags())
            try await withEtcd(.swiftEtcd, options: options) { server in
                let secure = try await server.etcdctl.run("put", "k", "secure")
                #expect(secure.succeeded, "\(secure)")
                let plain = try await Etcdctl(endpoints: server.clientEndpoint).run("get", "k", "--print-value-only")
                #expect(plain.succeeded && plain.standardOutput == "secure\n", "\(plain)")
                let plainPut = try await Etcdctl(endpoints: server.clientEndpoint).run("put", "k", "plain")
                #expect(plainPut.succeeded, "\(plainPut)")
                let secureGet = try await server.etcdctl.run("get", "k", "--print-value-only")
                #expect(secureGet.standardOutput == "plain\n", "\(secureGet)")
                let https = try await Curl.request(
                    "GET", url: "https://\(server.clientEndpoint)/health", extraArguments: tls.curlFlags())
                #expect(https.status == 200 && https.body.contains("\"health\":\"true\""), "\(https)")
                let http = try await Curl.request("GET", url: "http://\(server.clientEndpoint)/health")
                #expect(http.status == 200 && http.body.contains("\"health\":\"true\""), "\(http)")
            }
        }
    }

    @Test("an https metrics URL serves /metrics and /health over TLS with the client certificate", arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func metricsOverTLS(flavor: ServerFlavor) async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let port = try LoopbackPort.allocate()
            let options = EtcdOptions(
                extraArguments: tls.serverFlags + ["--listen-metrics-urls=https://127.0.0.1:\(port)"], clientSchemes: ["https"],
                etcdctlArguments: tls.etcdctlFlags())
            try await withEtcd(flavor, options: options) { server in
                let metrics = try await Curl.request("GET", url: "https://127.0.0.1:\(port)/metrics", extraArguments: tls.curlFlags())
                #expect(metrics.status == 200 && metrics.body.contains("etcd_server_has_leader 1"), "\(flavor): \(metrics.status) \(metrics.standardError)")
                let health = try await Curl.request("GET", url: "https://127.0.0.1:\(port)/health", extraArguments: tls.curlFlags())
                #expect(health.status == 200, "\(flavor): \(health)")
                let anonymous = try await Curl.request("GET", url: "https://127.0.0.1:\(port)/health", extraArguments: tls.curlFlags(as: nil))
                #expect(anonymous.status == 0, "\(flavor): \(anonymous)")
            }
        }
    }

    @Test("bad handshakes (plaintext HTTP and gRPC, a client without a certificate) are logged and the server goes on serving")
    func badHandshakes() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let options = EtcdOptions(extraArguments: tls.serverFlags, clientSchemes: ["https"], etcdctlArguments: tls.etcdctlFlags())
            try await withEtcd(.swiftEtcd, options: options) { server in
                for _ in 0..<3 {
                    let plaintext = try await Curl.request("GET", url: "http://\(server.clientEndpoint)/health", timeout: .seconds(5))
                    #expect(plaintext.status == 0, "\(plaintext)")
                    let grpc = try await Etcdctl(endpoints: server.clientEndpoint).run(["get", "k"] + Self.failFast)
                    #expect(!grpc.succeeded, "\(grpc)")
                    let anonymous = try await Etcdctl(endpoints: server.clientEndpoint)
                        .run(tls.etcdctlFlags(as: nil) + ["get", "k"] + Self.failFast)
                    #expect(!anonymous.succeeded, "\(anonymous)")
                }
                let after = try await server.etcdctl.run("put", "still", "serving")
                #expect(after.succeeded, "\(after)\n\(server.logTail())")
                let log = server.logTail(lines: 2_000)
                #expect(log.contains("rejected connection"), "\(log.suffix(3_000))")
                #expect(server.child?.exitStatus == nil)
            }
        }
    }

    @Test("a three-member swift-etcd cluster with TLS between peers and for clients elects a leader, replicates, and forwards through followers")
    func peerTLSCluster() async throws {
        try await withTemporaryDirectory(prefix: "tls-fixtures") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let flags =
                tls.serverFlags + [
                    "--peer-cert-file=\(tls.serverCert)", "--peer-key-file=\(tls.serverKey)",
                    "--peer-trusted-ca-file=\(tls.caFile)", "--peer-client-cert-auth", "--peer-cert-allowed-cn=etcd-server",
                ]
            try await withEtcdCluster(
                .swiftEtcd, extraArguments: flags, schemes: EtcdCluster.Schemes(client: "https", peer: "https"),
                etcdctlArguments: tls.etcdctlFlags()
            ) { cluster in
                let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
                let followers = cluster.members.filter { $0 != leader }
                let put = try await cluster.etcdctl([followers[0]]).run("put", "replicated", "over-tls")
                #expect(put.succeeded, "\(put)")
                for member in cluster.members {
                    let get = try await cluster.etcdctl([member]).run("get", "replicated", "--print-value-only")
                    #expect(get.standardOutput == "over-tls\n", "\(member.name): \(get)")
                }
                let list = try await cluster.etcdctl().run("member", "list")
                #expect(list.standardOutput.split(separator: "\n").count == 3, "\(list)")
                #expect(list.standardOutput.contains("https://127.0.0.1:\(leader.peerPort)"), "\(list)")
                // A lease's keepalive through a follower is forwarded to the leader's https
                // client URL, presenting the member's certificate.
                let grant = try await cluster.etcdctl([followers[1]]).run("lease", "grant", "60")
                let leaseID = try #require(grant.standardOutput.split(separator: " ").dropFirst().first.map(String.init), "\(grant)")
                let keepAlive = try await cluster.etcdctl([followers[1]]).run("lease", "keep-alive", "--once", leaseID)
                #expect(keepAlive.succeeded && keepAlive.standardOutput.contains("keepalived with TTL"), "\(keepAlive)\n\(cluster.logTails())")
            }
        }
    }

    /// Runs `etcdctl get greeting` with `flags` instead of the session's TLS flags and records it.
    static func record(_ side: CompatibilitySession, as flags: [String], _ label: String) async throws {
        let endpoint = side.server.clientEndpoint
        let result = try await Etcdctl(endpoints: endpoint, globalArguments: flags).run(["get", "greeting"] + failFast)
        side.record(
            TranscriptEntry(
                label: "etcdctl get greeting \(label)", exit: result.timedOut ? "timed out" : result.exit.description,
                output: CompatibilitySession.observation(of: result.standardOutput, endpoint: endpoint),
                errorOutput: CompatibilitySession.normalizeStandardError(result.standardError, endpoint: endpoint)))
    }

    /// `openssl x509 -in path -noout <arguments>`'s output, trimmed.
    static func opensslX509(_ path: String, _ arguments: [String]) async throws -> String {
        try await withTemporaryDirectory(prefix: "openssl") { scratch in
            let output = scratch.appending("out")
            let child = try ChildProcess(
                executable: URL(fileURLWithPath: "/usr/bin/openssl"), arguments: ["x509", "-in", path, "-noout"] + arguments,
                standardOutput: output, standardError: output)
            if await child.waitForExit(timeout: .seconds(20)) == nil { _ = await child.kill() }
            return String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
