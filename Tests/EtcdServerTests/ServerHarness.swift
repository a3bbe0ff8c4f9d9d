import EtcdAPI
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Testing

/// Runs an in-process server on 127.0.0.1 with a port chosen by the system, and stops it (by
/// cancelling its task) when `body` returns or throws.
func withServer<Result: Sendable>(
    dataDirectory: String? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: @Sendable (_ port: Int) async throws -> Result
) async throws -> Result {
    try await withServerHandle(dataDirectory: dataDirectory, configure: configure) { _, port in try await body(port) }
}

/// ``withServer(dataDirectory:configure:_:)``, also handing `body` the server itself.
func withServerHandle<Result: Sendable>(
    dataDirectory: String? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: @Sendable (_ server: EtcdServer, _ port: Int) async throws -> Result
) async throws -> Result {
    let directory = dataDirectory ?? FileManager.default.temporaryDirectory
        .appendingPathComponent("etcd-server-test-\(UUID().uuidString)").path
    defer { if dataDirectory == nil { try? FileManager.default.removeItem(atPath: directory) } }
    var configuration = ServerConfiguration()
    configuration.dataDirectory = directory
    configuration.listenClientURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
    // A lone member still listens for peers, as etcd does; on a free port, so tests run side by side.
    configuration.listenPeerURLs = [EndpointURL(scheme: "http", host: "127.0.0.1", port: 0)]
    configure(&configuration)
    var logger = Logger(label: "etcd.test")
    logger.logLevel = .warning
    let server = EtcdServer(configuration: configuration, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        let addresses = await server.clientAddresses()
        guard let port = addresses.first?.port else {
            try await group.waitForAll()
            throw TestFailure("the server stopped before it listened")
        }
        do {
            let result = try await body(server, port)
            group.cancelAll()
            try await group.waitForAll()
            return result
        } catch {
            group.cancelAll()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Runs `body` with a KV client connected to 127.0.0.1:`port`.
func withKVClient<Result: Sendable>(
    port: Int,
    _ body: @Sendable (Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
) async throws -> Result {
    let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(address: "127.0.0.1", port: port),
        transportSecurity: .plaintext
    )
    return try await withGRPCClient(transport: transport) { client in
        try await body(Etcdserverpb_KV.Client(wrapping: client), client)
    }
}

/// Polls `condition` every 10 ms; fails after `timeout`.
///
/// Every caller waits for something that must happen eventually, so the bound only turns a hang
/// into a failure: it is generous because the whole suite shares two cores with clusters of
/// server processes, and a test's task may wait long for its turn.
func waitUntil(
    timeout: Duration = .seconds(90), sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            throw TestFailure("condition not met within \(timeout) (\(sourceLocation))")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Data {
    init(_ text: String) { self = Data(text.utf8) }
}
