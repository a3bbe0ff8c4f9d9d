public import EtcdAPI
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import SwiftProtobuf
import Foundation

/// Raw gRPC clients for one server, for requests etcdctl cannot express (Range revision filters,
/// compares over a key range or on leases, nested Txn, and so on).
public struct EtcdGRPCClient: Sendable {
    /// Plaintext HTTP/2 over NIO, as etcd clients use on 127.0.0.1.
    public typealias Transport = HTTP2ClientTransport.Posix

    /// The client these service clients share; its connections run for the scope of
    /// ``withEtcdGRPCClient(port:_:)``.
    public let client: GRPCClient<Transport>
    public let kv: Etcdserverpb_KV.Client<Transport>
    public let watch: Etcdserverpb_Watch.Client<Transport>
    public let lease: Etcdserverpb_Lease.Client<Transport>
    public let cluster: Etcdserverpb_Cluster.Client<Transport>
    public let maintenance: Etcdserverpb_Maintenance.Client<Transport>
    public let auth: Etcdserverpb_Auth.Client<Transport>

    public init(wrapping client: GRPCClient<Transport>) {
        self.client = client
        self.kv = Etcdserverpb_KV.Client(wrapping: client)
        self.watch = Etcdserverpb_Watch.Client(wrapping: client)
        self.lease = Etcdserverpb_Lease.Client(wrapping: client)
        self.cluster = Etcdserverpb_Cluster.Client(wrapping: client)
        self.maintenance = Etcdserverpb_Maintenance.Client(wrapping: client)
        self.auth = Etcdserverpb_Auth.Client(wrapping: client)
    }
}

/// Connects to the server listening on `<host>:<port>` (plaintext; host 127.0.0.1 unless given),
/// runs `body`, then shuts the client down.
public func withEtcdGRPCClient<Result: Sendable>(
    host: String = "127.0.0.1",
    port: Int,
    _ body: (EtcdGRPCClient) async throws -> Result
) async throws -> Result {
    try await withGRPCClient(
        transport: .http2NIOPosix(
            target: .ipv4(address: host, port: port),
            transportSecurity: .plaintext
        )
    ) { client in
        try await body(EtcdGRPCClient(wrapping: client))
    }
}

/// Like ``withEtcdGRPCClient(port:_:)``, for a scope that may end before it makes any call, e.g.
/// because the test killed the server first.
///
/// grpc-swift fails such a scope with `clientIsStopped` when the client is shut down before its
/// connections started running, which throws away the body's result; here that ends the scope
/// normally. Every other error still fails it.
public func withEtcdGRPCClientAllowingNoCalls<Result: Sendable>(
    host: String = "127.0.0.1",
    port: Int,
    _ body: (EtcdGRPCClient) async throws -> Result
) async throws -> Result {
    let client = GRPCClient(
        transport: try .http2NIOPosix(
            target: .ipv4(address: host, port: port),
            transportSecurity: .plaintext
        )
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            do {
                try await client.runConnections()
            } catch let error as RuntimeError where error.code == .clientIsStopped {
                // Shut down before it ran: the body made no call, which this scope allows.
            }
        }
        let result: Result
        do {
            result = try await body(EtcdGRPCClient(wrapping: client))
        } catch {
            client.beginGracefulShutdown()
            throw error
        }
        client.beginGracefulShutdown()
        try await group.waitForAll()
        return result
    }
}

extension EtcdProcess {
    /// Runs `body` with raw gRPC clients connected to this server.
    public func withGRPCClient<Result: Sendable>(_ body: (EtcdGRPCClient) async throws -> Result) async throws
        -> Result
    {
        try await withEtcdGRPCClient(port: clientPort, body)
    }
}

extension CompatibilitySession {
    /// Makes one gRPC call and records its outcome: the response as protobuf JSON (proto field
    /// names, so `header.cluster_id` is normalized like etcdctl's), or the error's status code and
    /// message, which clients match on.
    @discardableResult
    public func grpc<Response: SwiftProtobuf.Message>(
        _ label: String,
        _ call: () async throws -> Response
    ) async -> Response? {
        do {
            let response = try await call()
            record("grpc \(label)", Self.observation(of: response))
            return response
        } catch let error as RPCError {
            record("grpc \(label)", .text("error"), errorOutput: "\(error.code): \(error.message)")
            return nil
        } catch {
            record("grpc \(label)", .text("error"), errorOutput: String(describing: error))
            return nil
        }
    }

    /// Sends `request` with `call` and records the outcome under a label made of `method` and the
    /// request in one-line protobuf text format, e.g. `KV.Range { key: "a" range_end: "b" }`.
    @discardableResult
    public func grpc<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String,
        _ request: Request,
        _ call: (Request) async throws -> Response
    ) async -> Response? {
        await grpc("\(method) { \(Self.oneLine(request)) }") { try await call(request) }
    }

    /// A message in protobuf text format on one line, long fields shortened.
    public static func oneLine(_ message: some SwiftProtobuf.Message) -> String {
        let lines = message.textFormatString().split(separator: "\n").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let text = lines.joined(separator: " ")
        return text.utf8.count > 300 ? "\(text.prefix(250))…(\(text.utf8.count) bytes)" : text
    }

    /// A protobuf message as a normalized JSON observation.
    public static func observation(of message: some SwiftProtobuf.Message) -> Observation {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        guard let text = try? message.jsonString(options: options), let value = try? JSONValue(parsing: text) else {
            return .text(message.textFormatString())
        }
        return .json(EtcdJSON.normalize(value))
    }
}
