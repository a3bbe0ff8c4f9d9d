public import NIOCore
public import NIOHPACK

/// What a lean server serves: its method table and the code behind each method.
public protocol LeanRPCDispatcher: Sendable {
    /// The method a request's `:path` names (`/package.Service/Method`).
    func route(path: String) -> LeanRPCRoute

    /// Runs one unary call of `method` (from ``route(path:)``) on the request message's bytes.
    /// Returns the encoded response, framed with ``GRPCMessageWriter``, or the status it ends
    /// with. Runs as a task of its own, cancelled if the client resets the stream or its
    /// deadline passes.
    func callUnary(_ method: Int, request: ByteBuffer, head: LeanRPCRequestHead) async -> LeanRPCOutcome

    /// Runs one streaming call of `method` (client, server or bidirectional streaming: the
    /// protocol does not tell them apart). `requests` yields each request message's bytes and
    /// ends when the client half-closes (or throws if the stream is reset); `responses` sends
    /// framed messages. The returned status ends the call. Runs as a task of its own, cancelled
    /// if the client resets the stream, the connection closes or the deadline passes.
    func callStreaming(
        _ method: Int, requests: LeanRPCRequestStream, responses: LeanRPCResponseStream, head: LeanRPCRequestHead
    ) async -> LeanRPCStatus
}

/// Where a `:path` leads.
public enum LeanRPCRoute: Sendable, Equatable {
    /// A unary method of the table, by its index.
    case unary(Int)
    /// A streaming method of the table, by its index.
    case streaming(Int)
    /// No such service, or no such method in a known service.
    case unknownService(String)
    case unknownMethod(service: String, method: String)
}

/// What a call learned from its request headers.
public struct LeanRPCRequestHead: Sendable {
    public var path: String
    /// The custom metadata (every header but the pseudo-headers and the protocol's own).
    public var metadata: HPACKHeaders
    /// When the client gives up (`grpc-timeout`), if it said.
    public var deadline: NIODeadline?
    /// The Subject CommonName of the client's certificate, when the connection is TLS, the
    /// server requires client certificates with `--client-cert-auth` and the chain verified:
    /// etcd's identity for a request without a token. nil otherwise.
    public var clientCertificateCommonName: String?

    public init(
        path: String, metadata: HPACKHeaders = [:], deadline: NIODeadline? = nil, clientCertificateCommonName: String? = nil
    ) {
        self.path = path
        self.metadata = metadata
        self.deadline = deadline
        self.clientCertificateCommonName = clientCertificateCommonName
    }
}

/// How a unary call ends.
public enum LeanRPCOutcome: Sendable {
    /// OK, with this framed response message.
    case response(ByteBuffer)
    /// Another status, with its message (sent percent-encoded).
    case failure(GRPCStatusCode, String)
}

/// How a streaming call ends: the status its trailers carry.
public struct LeanRPCStatus: Sendable, Equatable {
    public var code: GRPCStatusCode
    public var message: String

    public init(_ code: GRPCStatusCode, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = LeanRPCStatus(.ok)
}
