public import Foundation

/// Certificates for TLS tests, made with the openssl command line in a test's own directory:
/// a CA; a server certificate for 127.0.0.1 and localhost (usable as a client certificate too,
/// as etcd's peers and its own dialers present it); client certificates with the CommonNames
/// `alice` and `bob`, bob's revoked in a CRL; a second CA with a client certificate `mallory`
/// that the first CA does not vouch for; and one peer certificate per member name asked for.
///
/// EC P-256 keys keep it fast (a set takes a fraction of a second).
public struct TLSFixtures: Sendable {
    public let directory: URL

    public var caFile: String { path("ca.crt") }
    public var serverCert: String { path("server.crt") }
    public var serverKey: String { path("server.key") }
    public var crlFile: String { path("crl.pem") }

    /// A client certificate and key with CommonName `name` (alice, bob, mallory).
    public func clientCert(_ name: String) -> String { path("\(name).crt") }
    public func clientKey(_ name: String) -> String { path("\(name).key") }

    /// A member's peer certificate (CommonName the member's name, 127.0.0.1 and localhost).
    public func peerCert(_ member: String) -> String { path("peer-\(member).crt") }
    public func peerKey(_ member: String) -> String { path("peer-\(member).key") }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The server flags for client TLS with client certificates required.
    public var serverFlags: [String] {
        ["--cert-file=\(serverCert)", "--key-file=\(serverKey)", "--trusted-ca-file=\(caFile)", "--client-cert-auth"]
    }

    /// etcdctl's flags to connect as `client` (no client certificate when nil).
    public func etcdctlFlags(as client: String? = "alice") -> [String] {
        var flags = ["--cacert=\(caFile)"]
        if let client { flags += ["--cert=\(clientCert(client))", "--key=\(clientKey(client))"] }
        return flags
    }

    /// curl's flags to connect as `client`.
    public func curlFlags(as client: String? = "alice") -> [String] {
        var flags = ["--cacert", caFile]
        if let client { flags += ["--cert", clientCert(client), "--key", clientKey(client)] }
        return flags
    }

    /// Makes every certificate in `directory`; `peers` names the members that get peer certificates.
    public static func make(in directory: URL, peers: [String] = []) async throws -> TLSFixtures {
        let fixtures = TLSFixtures(directory: directory)
        let dir = directory.path
        try Data(extensions.utf8).write(to: directory.appendingPathComponent("ext.cnf"))
        try Data(caConfiguration(dir).utf8).write(to: directory.appendingPathComponent("ca.cnf"))
        try Data().write(to: directory.appendingPathComponent("index.txt"))
        try Data("01\n".utf8).write(to: directory.appendingPathComponent("crlnumber"))
        try Data().write(to: directory.appendingPathComponent("other-index.txt"))
        for ca in ["ca", "other-ca"] {
            try await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/\(ca).key"], in: directory)
            try await openssl(
                [
                    "req", "-x509", "-new", "-key", "\(dir)/\(ca).key", "-sha256", "-days", "30", "-subj",
                    "/CN=swift-etcd test \(ca)", "-config", "\(dir)/ext.cnf", "-extensions", "ca", "-out", "\(dir)/\(ca).crt",
                ], in: directory)
        }
        var serial = 100
        func leaf(_ name: String, subject: String, profile: String, ca: String = "ca") async throws {
            serial += 1
            try await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/\(name).key"], in: directory)
            try await openssl(
                ["req", "-new", "-key", "\(dir)/\(name).key", "-subj", subject, "-config", "\(dir)/ext.cnf", "-out", "\(dir)/\(name).csr"],
                in: directory)
            try await openssl(
                [
                    "x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(ca).crt", "-CAkey", "\(dir)/\(ca).key",
                    "-set_serial", "\(serial)", "-days", "30", "-sha256", "-extfile", "\(dir)/ext.cnf", "-extensions", profile,
                    "-out", "\(dir)/\(name).crt",
                ], in: directory)
        }
        try await leaf("server", subject: "/CN=etcd-server", profile: "server")
        for client in ["alice", "bob"] { try await leaf(client, subject: "/CN=\(client)", profile: "client") }
        try await leaf("mallory", subject: "/CN=mallory", profile: "client", ca: "other-ca")
        for member in peers { try await leaf("peer-\(member)", subject: "/CN=\(member)", profile: "server") }
        try await openssl(["ca", "-config", "\(dir)/ca.cnf", "-revoke", "\(dir)/bob.crt"], in: directory)
        try await openssl(["ca", "-config", "\(dir)/ca.cnf", "-gencrl", "-out", "\(dir)/crl.pem"], in: directory)
        return fixtures
    }

    private static let extensions = """
        [req]
        distinguished_name = dn
        [dn]
        [ca]
        basicConstraints = critical,CA:TRUE
        keyUsage = critical,keyCertSign,cRLSign,digitalSignature
        subjectKeyIdentifier = hash
        [server]
        basicConstraints = CA:FALSE
        keyUsage = critical,digitalSignature,keyEncipherment
        extendedKeyUsage = serverAuth,clientAuth
        subjectAltName = IP:127.0.0.1,DNS:localhost
        [client]
        basicConstraints = CA:FALSE
        keyUsage = critical,digitalSignature,keyEncipherment
        extendedKeyUsage = clientAuth

        """

    private static func caConfiguration(_ dir: String) -> String {
        """
        [ca]
        default_ca = testca
        [testca]
        database = \(dir)/index.txt
        crlnumber = \(dir)/crlnumber
        certificate = \(dir)/ca.crt
        private_key = \(dir)/ca.key
        default_md = sha256
        default_crl_days = 30

        """
    }

    /// Runs `openssl arguments`; throws with its output if it fails.
    public static func openssl(_ arguments: [String], in directory: URL) async throws {
        let log = directory.appendingPathComponent("openssl.log")
        let child = try ChildProcess(
            executable: URL(fileURLWithPath: ProcessInfo.processInfo.environment["OPENSSL_BINARY"] ?? "/usr/bin/openssl"),
            arguments: arguments, standardOutput: log, standardError: log)
        let exit = await child.waitForExit(timeout: .seconds(30))
        guard exit == ProcessExit(status: 0, signaled: false) else {
            if exit == nil { _ = await child.kill() }
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw EtcdTestSupportError.timedOut("openssl \(arguments.joined(separator: " ")) failed (\(exit.map { "\($0)" } ?? "timed out")): \(output)")
        }
    }
}
