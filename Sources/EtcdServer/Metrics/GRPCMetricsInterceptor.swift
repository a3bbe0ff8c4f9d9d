import GRPCCore
import Prometheus

/// Counts the grpc-swift server's calls as the lean server counts its own (go-grpc-prometheus's
/// `grpc_server_started_total` and `grpc_server_handled_total` by code), so that /metrics reads
/// the same whichever server `--experimental-grpc-server` picks. Messages and bytes are not
/// counted on this path.
struct GRPCMetricsInterceptor: ServerInterceptor {
    let metrics: GRPCServerMetrics

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let counters = metrics.counters(path: "/" + context.descriptor.fullyQualifiedMethod) else {
            return try await next(request, context)
        }
        counters.started.increment()
        var response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            counters.handled(code: Self.code(of: error)).increment()
            throw error
        }
        switch response.accepted {
        case .failure(let error):
            counters.handled(code: error.code.rawValue).increment()
        case .success(var contents):
            // The call ends when its response stream does.
            let producer = contents.producer
            contents.producer = { writer in
                do {
                    let trailers = try await producer(writer)
                    counters.handled(code: 0).increment()
                    return trailers
                } catch {
                    counters.handled(code: Self.code(of: error)).increment()
                    throw error
                }
            }
            response.accepted = .success(contents)
        }
        return response
    }

    /// The status code an error ends a call with (Unknown for one that carries none).
    static func code(of error: any Error) -> Int {
        if let error = error as? RPCError { return error.code.rawValue }
        if let error = error as? any RPCErrorConvertible { return error.rpcErrorCode.rawValue }
        return RPCError.Code.unknown.rawValue
    }
}
