import EtcdLeanRPC
import EtcdRaft
import EtcdTestSupport
import Foundation
import Logging
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
import NIOSSL
import Synchronization
import Testing

@testable import EtcdServer

/// TLS's parts in process: the flags and etcd's checks of them, certificate revocation lists,
/// self-signed certificates, the connection guard (CRL, allowed names, the CommonName it reports), and
/// the peer transport's messages, snapshots and cluster queries over TLS.
@Suite("TLS", .serialized)
struct TLSTests {
    // MARK: Flags

    static func configuration(_ arguments: [String]) throws -> ServerConfiguration {
        try ServerConfiguration(flags: FlagParser.parse(arguments: arguments, environment: [:]))
    }

    static func refusal(_ arguments: [String]) -> String {
        do {
            let configuration = try configuration(arguments)
            try configuration.validate()
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test("TLS flags parse into both sides' settings, comma lists included")
    func flags() throws {
        let configuration = try Self.configuration([
            "--cert-file=/s.crt", "--key-file=/s.key", "--trusted-ca-file=/ca.crt", "--client-cert-auth",
            "--client-crl-file=/c.crl", "--client-cert-allowed-hostname=a.example,b.example", "--peer-cert-file=/p.crt",
            "--peer-key-file=/p.key", "--peer-cert-allowed-cn=m1, m2", "--peer-auto-tls",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "--tls-max-version=TLS1.2",
            "--self-signed-cert-validity=3", "--experimental-peer-skip-client-san-verification",
        ])
        #expect(configuration.clientTLS.certFile == "/s.crt" && configuration.clientTLS.clientCertAuth)
        #expect(configuration.clientTLS.requiresClientCertificate)
        #expect(configuration.clientTLS.allowedHostnames == ["a.example", "b.example"])
        #expect(configuration.peerTLS.allowedCommonNames == ["m1", "m2"])
        #expect(configuration.peerTLS.autoTLS && configuration.peerTLS.skipClientSANVerification)
        #expect(configuration.tlsProtocol.maximumVersion == .tls12)
        #expect(configuration.tlsProtocol.selfSignedCertValidityYears == 3)
        #expect(try ServerConfiguration.startupNotices(FlagParser.parse(arguments: ["--cert-file=/x", "--auto-tls"], environment: [:])).isEmpty)
    }

    @Test("what etcd refuses at start is refused with its messages")
    func refusals() {
        #expect(Self.refusal(["--cipher-suites=TLS_FOO"]) == "unexpected TLS cipher suite \"TLS_FOO\"")
        #expect(Self.refusal(["--cipher-suites=TLS_RSA_WITH_RC4_128_SHA"]).contains("not supported by this server's TLS library"))
        #expect(Self.refusal(["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"]) == "min version (TLS1.3) is greater than max version (TLS1.2)")
        #expect(
            Self.refusal(["--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
                == "cipher suites cannot be configured when only TLS1.3 is enabled")
        #expect(
            Self.refusal(["--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"])
                == "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme")
        #expect(
            Self.refusal(["--peer-cert-allowed-cn=a", "--peer-cert-allowed-hostname=b"])
                == "AllowedCNs and AllowedHostnames are mutually exclusive (cns=[\"a\"], hostnames=[\"b\"])")
        #expect(Self.refusal(["--cert-file=/only-cert"]).hasPrefix("KeyFile and CertFile must both be present"))
        #expect(Self.refusal(["--auto-tls", "--self-signed-cert-validity=0"]) == "selfSignedCertValidity is invalid,it should be greater than 0")
        // TLS 1.3 names are accepted (Go ignores them for TLS 1.3 too) and need no TLS 1.2 list.
        #expect(Self.refusal(["--cipher-suites=TLS_AES_128_GCM_SHA256"]) == "accepted")
    }

    /// NIOSSL traps (rather than throws) on a cipher list BoringSSL cannot use, so every name the
    /// table hands it must be one BoringSSL knows.
    @Test("every TLS 1.2 suite mapped to BoringSSL builds a context")
    func cipherSuiteNames() throws {
        for (name, support) in GoCipherSuites.table {
            guard case .boringSSL(let cipher) = support else { continue }
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.cipherSuites = cipher
            #expect(throws: Never.self, "\(name) -> \(cipher)") { _ = try NIOSSLContext(configuration: configuration) }
        }
    }

    // MARK: Certificates

    @Test("a revocation list from openssl names the revoked serial and no other; PEM and DER both read")
    func revocationList() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            let tls = try await TLSFixtures.make(in: directory.url)
            let list = try CertificateRevocationList(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: tls.crlFile))))
            let bob = try #require(try NIOSSLCertificate.fromPEMFile(tls.clientCert("bob")).first)
            let alice = try #require(try NIOSSLCertificate.fromPEMFile(tls.clientCert("alice")).first)
            #expect(list.isRevoked(serial: bob.serialNumber))
            #expect(!list.isRevoked(serial: alice.serialNumber))
            #expect(list.revokedSerials.count == 1)
            let der = directory.appending("crl.der").path
            try await TLSFixtures.openssl(["crl", "-in", tls.crlFile, "-outform", "DER", "-out", der], in: directory.url)
            #expect(try CertificateRevocationList(bytes: Array(Data(contentsOf: URL(fileURLWithPath: der)))) == list)
            #expect(throws: (any Error).self) { try CertificateRevocationList(bytes: Array("not a list".utf8)) }
        }
    }

    @Test("a self-signed certificate as etcd makes one: P-521, Organization etcd, the hosts as names, made once")
    func selfSigned() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            var settings = TLSSettings()
            settings.autoTLS = true
            let logger = Logger(label: "etcd.test")
            let fixtures = directory.appending("fixtures/client").path
            let resolved = try SelfSignedCertificate.resolve(
                settings, directory: fixtures, hosts: ["127.0.0.1", "localhost"], validityYears: 2, side: "client", logger: logger)
            #expect(resolved.isSelfSigned && resolved.certFile == fixtures + "/cert.pem")
            let certificate = try #require(try NIOSSLCertificate.fromPEMFile(resolved.certFile).first)
            #expect(certificate.subjectName.contains { $0.type == .organization && $0.value == "etcd" })
            let names = try AlternativeNames(certificate)
            #expect(names.matches(host: "127.0.0.1") && names.matches(host: "localhost") && !names.matches(host: "10.0.0.1"))
            let years = Double(certificate.notValidAfter - certificate.notValidBefore) / (365 * 24 * 3_600)
            #expect(abs(years - 2) < 0.01)
            let permissions = try FileManager.default.attributesOfItem(atPath: resolved.keyFile)[.posixPermissions] as? NSNumber
            #expect(permissions?.intValue == 0o600)
            // Existing files are kept, as etcd keeps them.
            let before = try Data(contentsOf: URL(fileURLWithPath: resolved.certFile))
            _ = try SelfSignedCertificate.resolve(settings, directory: fixtures, hosts: ["127.0.0.1"], validityYears: 1, side: "client", logger: logger)
            #expect(try Data(contentsOf: URL(fileURLWithPath: resolved.certFile)) == before)
            // Files given win over auto TLS.
            settings.certFile = "/given.crt"
            settings.keyFile = "/given.key"
            #expect(try SelfSignedCertificate.resolve(settings, directory: fixtures, hosts: [], validityYears: 1, side: "client", logger: logger) == settings)
        }
    }

    @Test("host names match as Go's VerifyHostname does: IPs by address, DNS names case-insensitively, one wildcard label")
    func hostnameMatching() {
        let names = AlternativeNames(dnsNames: ["*.example.com", "Node1.Local"], addresses: [[10, 0, 0, 1]])
        #expect(names.matches(host: "a.example.com"))
        #expect(!names.matches(host: "a.b.example.com") && !names.matches(host: "example.com"))
        #expect(names.matches(host: "node1.local.") && names.matches(host: "10.0.0.1"))
        #expect(!names.matches(host: "10.0.0.2") && !names.matches(host: "node2.local"))
    }

    // MARK: The connection guard

    static func contexts(
        _ fixtures: TLSFixtures, crl: Bool = false, allowedCommonNames: [String] = [], checksRemoteAddress: Bool = false
    ) throws -> TLSContexts {
        var settings = TLSSettings()
        settings.certFile = fixtures.serverCert
        settings.keyFile = fixtures.serverKey
        settings.trustedCAFile = fixtures.caFile
        settings.clientCertAuth = true
        if crl { settings.crlFile = fixtures.crlFile }
        settings.allowedCommonNames = allowedCommonNames
        var logger = Logger(label: "etcd.tls.test")
        logger.logLevel = .critical
        return try TLSContexts(
            settings: settings, protocolSettings: TLSProtocolSettings(), flags: .client, applicationProtocols: [],
            checksRemoteAddress: checksRemoteAddress, reportsCommonName: true, logger: logger, listener: "test")
    }

    @Test("the guard admits a verified client and reports its CommonName; a revoked, unknown-CA, anonymous or disallowed one gets no byte through")
    func connectionGuard() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            let fixtures = try await TLSFixtures.make(in: directory.url)
            let server = try await GuardedEchoServer.start(try Self.contexts(fixtures, crl: true))
            defer { Task { try? await server.channel.close() } }
            #expect(try await server.exchange(fixtures, as: "alice") == .echoed(commonName: "alice"))
            #expect(try await server.exchange(fixtures, as: "bob") == .closed)
            #expect(try await server.exchange(fixtures, as: "mallory") == .closed)
            #expect(try await server.exchange(fixtures, as: nil) == .closed)
            #expect(server.reportedNames == ["alice"])

            let picky = try await GuardedEchoServer.start(try Self.contexts(fixtures, allowedCommonNames: ["carol"]))
            defer { Task { try? await picky.channel.close() } }
            #expect(try await picky.exchange(fixtures, as: "alice") == .closed)
            // etcd's checkSAN: a certificate naming 127.0.0.1 connects from 127.0.0.1.
            let sanChecked = try await GuardedEchoServer.start(try Self.contexts(fixtures, checksRemoteAddress: true))
            defer { Task { try? await sanChecked.channel.close() } }
            #expect(try await sanChecked.exchange(fixtures, as: "server") == .echoed(commonName: "etcd-server"))
        }
    }

    @Test("certificate files replaced on disk are served from the next handshake, as etcd reads them at each one")
    func certificateRotation() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            let fixtures = try await TLSFixtures.make(in: directory.url, peers: ["rotated"])
            let liveCert = directory.appending("live.crt").path
            let liveKey = directory.appending("live.key").path
            try FileManager.default.copyItem(atPath: fixtures.serverCert, toPath: liveCert)
            try FileManager.default.copyItem(atPath: fixtures.serverKey, toPath: liveKey)
            var settings = TLSSettings()
            settings.certFile = liveCert
            settings.keyFile = liveKey
            let contexts = try TLSContexts(
                settings: settings, protocolSettings: TLSProtocolSettings(), flags: .client, applicationProtocols: [],
                checksRemoteAddress: false, reportsCommonName: false, logger: Logger(label: "etcd.tls.test"), listener: "test")
            let server = try await GuardedEchoServer.start(contexts)
            defer { Task { try? await server.channel.close() } }
            #expect(try await server.servedCommonName(fixtures) == "etcd-server")
            for (from, to) in [(fixtures.peerCert("rotated"), liveCert), (fixtures.peerKey("rotated"), liveKey)] {
                try FileManager.default.removeItem(atPath: to)
                try FileManager.default.copyItem(atPath: from, toPath: to)
            }
            #expect(try await server.servedCommonName(fixtures) == "rotated")
            // A broken file leaves the last good certificate in use.
            try Data("garbage".utf8).write(to: URL(fileURLWithPath: liveKey))
            #expect(try await server.servedCommonName(fixtures) == "rotated")
        }
    }

    // MARK: Peers

    static func peerConfiguration(_ fixtures: TLSFixtures, allowedCommonNames: [String] = []) throws -> PeerTransportConfiguration {
        var configuration = SnapshotNode.patientConfiguration()
        var settings = TLSSettings()
        settings.certFile = fixtures.serverCert
        settings.keyFile = fixtures.serverKey
        settings.trustedCAFile = fixtures.caFile
        settings.clientCertAuth = true
        settings.allowedCommonNames = allowedCommonNames
        var logger = Logger(label: "etcd.tls.test")
        logger.logLevel = .critical
        configuration.tls = try TLSContexts(
            settings: settings, protocolSettings: TLSProtocolSettings(), flags: .peer, applicationProtocols: [],
            checksRemoteAddress: true, reportsCommonName: false, logger: logger, listener: "peer")
        return configuration
    }

    static func connectSecurely(_ a: SnapshotNode, _ b: SnapshotNode) async throws -> (Int, Int) {
        let portA = try #require(try await a.transport.start(listeningOn: [PeerListenAddress(host: "127.0.0.1", port: 0, secure: true)]).first)
        let portB = try #require(try await b.transport.start(listeningOn: [PeerListenAddress(host: "127.0.0.1", port: 0, secure: true)]).first)
        a.transport.addPeer(b.id, host: "127.0.0.1", port: portB, secure: true)
        b.transport.addPeer(a.id, host: "127.0.0.1", port: portA, secure: true)
        return (portA, portB)
    }

    @Test("peers over TLS: messages both ways, a snapshot on its own connection, and the joining query")
    func peersOverTLS() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            let fixtures = try await TLSFixtures.make(in: directory.url)
            let configuration = try Self.peerConfiguration(fixtures, allowedCommonNames: ["etcd-server"])
            let a = SnapshotNode(1, snapshotDirectory: nil, configuration: configuration)
            let b = SnapshotNode(2, snapshotDirectory: directory.appending("b-snap").path, configuration: configuration)
            let (_, portB) = try await Self.connectSecurely(a, b)
            a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<50))
            b.transport.send(PeerNode.appends(from: 2, to: 1, indexes: 0..<50))
            try await waitUntil(timeout: .seconds(30)) { a.inbox.count == 50 && b.inbox.count == 50 }
            #expect(b.inbox.messages.map(\.index) == (0..<50).map(UInt64.init))

            let image = directory.appending("image.db").path
            try Data(SnapshotNode.pseudoRandomBytes(count: 3 << 20, seed: 3)).write(to: URL(fileURLWithPath: image))
            a.transport.sendSnapshot(SnapshotNode.msgSnap(from: 1, to: 2, index: 40, term: 2)) { image }
            try await waitUntil(timeout: .seconds(30)) { !a.reports.isEmpty }
            #expect(a.reports == [SnapshotReport(peer: NodeID(2), status: .finished)])
            #expect(b.deliveries.first?.sizeAtDelivery == 3 << 20)

            let info = PeerClusterInfo(clusterID: 9, members: [], removed: [])
            b.transport.answerClusterQueries { info }
            let answer = try await PeerClusterQuery.fetch(host: "127.0.0.1", port: portB, tls: configuration.tls, timeout: .seconds(10))
            #expect(answer == info)
            // A plaintext query to the TLS listener gets nothing.
            await #expect(throws: (any Error).self) {
                _ = try await PeerClusterQuery.fetch(host: "127.0.0.1", port: portB, timeout: .seconds(3))
            }
            await a.transport.shutdown()
            await b.transport.shutdown()
        }
    }

    @Test("a peer whose certificate's CommonName is not allowed is refused: nothing it sends is delivered")
    func peerNotAllowed() async throws {
        try await withTemporaryDirectory(prefix: "tls-unit") { directory in
            let fixtures = try await TLSFixtures.make(in: directory.url)
            let a = SnapshotNode(1, snapshotDirectory: nil, configuration: try Self.peerConfiguration(fixtures))
            let b = SnapshotNode(2, snapshotDirectory: nil, configuration: try Self.peerConfiguration(fixtures, allowedCommonNames: ["infra9"]))
            _ = try await Self.connectSecurely(a, b)
            a.transport.send(PeerNode.appends(from: 1, to: 2, indexes: 0..<5))
            try await waitUntil(timeout: .seconds(30)) { a.transport.statistics.reconnects >= 2 }
            #expect(b.inbox.count == 0)
            await a.transport.shutdown()
            await b.transport.shutdown()
        }
    }
}

/// A TLS server on 127.0.0.1 whose connections pass ``TLSConnectionGuard`` and then echo what
/// they read, recording the CommonNames the guard reports.
final class GuardedEchoServer: Sendable {
    let channel: any Channel
    private let recorder: NameRecorder

    var reportedNames: [String] { recorder.names.withLock { $0 } }

    enum Outcome: Equatable {
        case echoed(commonName: String?)
        case closed
    }

    private init(channel: any Channel, recorder: NameRecorder) {
        self.channel = channel
        self.recorder = recorder
    }

    static func start(_ tls: TLSContexts) async throws -> GuardedEchoServer {
        let recorder = NameRecorder()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls.addServerHandlers(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(EchoHandler(recorder: recorder))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return GuardedEchoServer(channel: channel, recorder: recorder)
    }

    /// Connects without a client certificate and returns the CommonName of the server's.
    func servedCommonName(_ fixtures: TLSFixtures) async throws -> String? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(fixtures.caFile)
        let context = try NIOSSLContext(configuration: configuration)
        let port = try #require(channel.localAddress?.port)
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { client.close(promise: nil) }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let certificate = try await client.eventLoop.submit {
                try? client.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate
            }.get()
            guard client.isActive else { return nil }
            if let certificate { return certificate.subjectName.last { $0.type == .commonName }?.value }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Connects with `client`'s certificate (none for nil), sends a line and waits for the echo.
    func exchange(_ fixtures: TLSFixtures, as client: String?) async throws -> Outcome {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(fixtures.caFile)
        if let client {
            let cert = client == "server" ? fixtures.serverCert : fixtures.clientCert(client)
            let key = client == "server" ? fixtures.serverKey : fixtures.clientKey(client)
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        let context = try NIOSSLContext(configuration: configuration)
        let port = try #require(channel.localAddress?.port)
        let answer = NIOLockedValueBox<String?>(nil)
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(LineCollector(answer: answer))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try? await client.writeAndFlush(ByteBuffer(string: "ping\n")).get()
        let deadline = ContinuousClock.now + .seconds(10)
        while client.isActive, answer.withLockedValue({ $0 }) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try? await client.close()
        guard let line = answer.withLockedValue({ $0 }) else { return .closed }
        let name = String(line.dropFirst("ping\n".count))
        return .echoed(commonName: name.isEmpty ? nil : name)
    }
}

/// Echoes each read, followed by the CommonName the guard reported (if any).
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let recorder: NameRecorder
    private var commonName: String?

    init(recorder: NameRecorder) { self.recorder = recorder }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let certificate = event as? LeanRPCServerHandler.ClientCertificate, let name = certificate.commonName {
            commonName = name
            recorder.names.withLock { $0.append(name) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        bytes.writeString(commonName ?? "")
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }
}

final class NameRecorder: Sendable {
    let names = Mutex<[String]>([])
}

private final class LineCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let answer: NIOLockedValueBox<String?>
    private var received = ""

    init(answer: NIOLockedValueBox<String?>) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += String(buffer: unwrapInboundIn(data))
        let collected = received
        answer.withLockedValue { $0 = collected }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
