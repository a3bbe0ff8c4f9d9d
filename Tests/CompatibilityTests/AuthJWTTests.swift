import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

/// `--auth-token jwt,...` on real etcd and on swift-etcd, with the same keys (made by openssl):
/// etcdctl sessions as with simple tokens, and the tokens themselves (their claims, their expiry,
/// a token from another key, a stale revision).
@Suite("JWT auth tokens compared with real etcd", .serialized)
struct AuthJWTTests {
    /// A fresh directory with an RSA and an EC key pair in PEM files.
    private static func makeKeys() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-jwt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for command in [
            "openssl genrsa -out rsa.key 2048", "openssl rsa -in rsa.key -pubout -out rsa.pub",
            "openssl genrsa -out other.key 2048",
            "openssl ecparam -name prime256v1 -genkey -noout -out ec.key", "openssl ec -in ec.key -pubout -out ec.pub",
        ] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command + " 2>/dev/null"]
            process.currentDirectoryURL = directory
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
        }
        return directory
    }

    private static func options(_ keys: URL, _ method: String, _ key: String, ttl: String = "5m") -> EtcdOptions {
        let token = "jwt,pub-key=\(keys.path)/\(key).pub,priv-key=\(keys.path)/\(key).key,sign-method=\(method),ttl=\(ttl)"
        return EtcdOptions(extraArguments: ["--bcrypt-cost=4", "--auth-token=\(token)"])
    }

    /// The token's claims other than `exp` (which depends on the clock), and its header.
    private static func describe(_ token: String) -> String {
        let parts = token.split(separator: ".").map { part -> String in
            var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            return String(decoding: Data(base64Encoded: base64) ?? Data(), as: UTF8.self)
        }
        guard parts.count == 3 else { return "not a JWT: \(token)" }
        let claims = parts[1].replacingOccurrences(of: #""exp":[0-9]+,"#, with: "", options: .regularExpression)
        return "header \(parts[0]), claims \(claims)"
    }

    private static func login(_ side: CompatibilitySession, _ name: String, _ password: String) async throws -> String {
        try await withEtcdGRPCClient(port: side.server.clientPort) { client in
            var request = Etcdserverpb_AuthenticateRequest()
            request.name = name
            request.password = password
            return try await client.auth.authenticate(request).token
        }
    }

    private static func get(_ side: CompatibilitySession, _ key: String, token: String) async -> String {
        do {
            return try await withEtcdGRPCClient(port: side.server.clientPort) { client in
                var metadata = Metadata()
                metadata.addString(token, forKey: "token")
                var range = Etcdserverpb_RangeRequest()
                range.key = Data(key.utf8)
                let response = try await client.kv.range(range, metadata: metadata)
                return "values \(response.kvs.map { String(decoding: $0.value, as: UTF8.self) })"
            }
        } catch let error as RPCError {
            return "\(error.code): \(error.message)"
        } catch {
            return "\(error)"
        }
    }

    @Test("RS256 and ES256: logins, claims, permissions, a stale revision and a token signed by another key")
    func signedTokens() async throws {
        let keys = try Self.makeKeys()
        defer { try? FileManager.default.removeItem(at: keys) }
        for (method, key) in [("RS256", "rsa"), ("ES256", "ec")] {
            try await expectCompatible("jwt \(method)", options: Self.options(keys, method, key)) { side in
                try await AuthCompatibilityTests.setUp(side)
                try await side.etcdctl(AuthCompatibilityTests.alice + ["put", "foo", "jwt"])
                try await side.etcdctl(AuthCompatibilityTests.alice + ["get", "d1"])
                try await side.etcdctl(AuthCompatibilityTests.root + ["user", "list"])
                let token = try await Self.login(side, "alice", "alicepw")
                side.record("alice's token", .text(Self.describe(token)))
                side.record("get with it", .text(await Self.get(side, "foo", token: token)))
                // Any change of users or roles makes tokens signed before it stale.
                try await side.etcdctl(AuthCompatibilityTests.root + ["role", "add", "later"])
                side.record("get after a change", .text(await Self.get(side, "foo", token: token)))
                side.record("a forged token", .text(await Self.get(side, "foo", token: token.dropLast(4) + "AAAA")))
                try await side.etcdctl(AuthCompatibilityTests.alice + ["get", "foo"])
            }
        }
    }

    @Test("a JWT expires after its ttl")
    func expiry() async throws {
        let keys = try Self.makeKeys()
        defer { try? FileManager.default.removeItem(at: keys) }
        try await expectCompatible("jwt expiry", options: Self.options(keys, "RS256", "rsa", ttl: "2s")) { side in
            try await AuthCompatibilityTests.setUp(side)
            let token = try await Self.login(side, "alice", "alicepw")
            side.record("fresh", .text(await Self.get(side, "foo", token: token)))
            try await Task.sleep(for: .seconds(3))
            side.record("after its ttl", .text(await Self.get(side, "foo", token: token)))
        }
    }
}
