import EtcdLeanRPC
import GRPCCore
import NIOHPACK

/// What a call presented to prove who it comes from: a token (gRPC metadata `token`, as clientv3
/// sends it, else `authorization`, as the JSON gateway forwards it) and the CommonName of its
/// verified client certificate. Bound for the call's task by the server that received it, and
/// read by ``Authenticator``.
struct RequestCredentials: Sendable, Equatable {
    var token: String?
    var commonName: String?

    @TaskLocal static var current = RequestCredentials()

    init(token: String? = nil, commonName: String? = nil) {
        self.token = token
        self.commonName = commonName
    }

    /// The credentials in gRPC metadata; nil when it holds none (most calls, with auth off).
    init?(metadata: HPACKHeaders, commonName: String? = nil) {
        let token = metadata.first(name: "token") ?? metadata.first(name: "authorization")
        guard token != nil || commonName != nil else { return nil }
        self.init(token: token, commonName: commonName)
    }

    /// The credentials of a call to the lean server: its token, and the CommonName of its
    /// connection's verified client certificate (set only with `--client-cert-auth`).
    init?(head: LeanRPCRequestHead) {
        self.init(metadata: head.metadata, commonName: head.clientCertificateCommonName)
    }

    /// Runs `body` with these credentials bound, or unbound when there are none.
    static func with<Result: Sendable>(
        _ credentials: RequestCredentials?, _ body: () async throws -> Result
    ) async rethrows -> Result {
        guard let credentials else { return try await body() }
        return try await $current.withValue(credentials, operation: body)
    }
}

/// Binds a call's credentials on the grpc-swift server (the lean server binds them itself).
struct CredentialsInterceptor: ServerInterceptor {
    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let metadata = request.metadata
        let token = metadata[stringValues: "token"].first(where: { _ in true })
            ?? metadata[stringValues: "authorization"].first(where: { _ in true })
        guard let token else { return try await next(request, context) }
        let credentials = RequestCredentials(token: token)
        var response = try await RequestCredentials.$current.withValue(credentials) {
            try await next(request, context)
        }
        // The handler's body runs when the response is produced, after this returns.
        if case .success(var contents) = response.accepted {
            let producer = contents.producer
            contents.producer = { writer in
                try await RequestCredentials.$current.withValue(credentials) { try await producer(writer) }
            }
            response.accepted = .success(contents)
        }
        return response
    }
}
