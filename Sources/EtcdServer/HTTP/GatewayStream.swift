import EtcdAPI
import EtcdLeanRPC
import GRPCCore
import NIOCore
import NIOHTTP1
import Prometheus
import SwiftProtobuf

/// The gateway's streaming calls (`POST /v3/watch`, `POST /v3/lease/keepalive`): the body's
/// requests (one JSON object after another) feed one call of the service, and its responses come
/// back as chunks of `{"result":{…}}` lines for as long as the client stays connected, as
/// grpc-gateway streams them.
enum GatewayStream {
    static func response<Request: SwiftProtobuf.Message, Response: Sendable>(
        to body: ByteBuffer, descriptor: MethodDescriptor, counters: GRPCServerMetrics.MethodCounters?,
        encode: @escaping @Sendable (Response) throws -> any SwiftProtobuf.Message,
        call: @escaping @Sendable (RPCAsyncSequence<Request, any Error>, RPCWriter<Response>, ServerContext) async throws -> Void
    ) -> HTTPResponse {
        let requests: [Request] = decodeRequests(Array(body.readableBytesView))
        return HTTPResponse(
            status: .ok, headers: [("Content-Type", "application/json"), ("Grpc-Metadata-Content-Type", "application/grpc")],
            body: []
        ) { (writer: HTTPBodyWriter) in
            counters?.started.increment()
            let (stream, continuation) = AsyncThrowingStream<Request, any Error>.makeStream()
            for request in requests {
                counters?.received.increment()
                continuation.yield(request)
            }
            // The client sends nothing more; the call goes on until it goes away.
            continuation.finish()
            let responses = RPCWriter(wrapping: ResultLines(writer: writer, counters: counters, encode: encode))
            let code = await serve(descriptor) { context in
                try await call(RPCAsyncSequence(wrapping: stream), responses, context)
            }
            counters?.handled(code: code).increment()
        }
    }

    /// Runs the call until it ends (the client went away, the server stopped) and returns the
    /// status code it ended with.
    private static func serve(
        _ descriptor: MethodDescriptor, _ body: @Sendable (ServerContext) async throws -> Void
    ) async -> Int {
        do {
            try await withServerContextRPCCancellationHandle { cancellation in
                let context = ServerContext(descriptor: descriptor, remotePeer: "", localPeer: "", cancellation: cancellation)
                // The connection closing cancels this task; the service learns it from its context.
                try await withTaskCancellationHandler {
                    try await body(context)
                } onCancel: {
                    cancellation.cancel()
                }
            }
            return 0
        } catch {
            return Int(LeanServiceTable.status(of: error).code.rawValue)
        }
    }

    /// The requests in the body, up to the first that does not decode.
    static func decodeRequests<Request: SwiftProtobuf.Message>(_ bytes: [UInt8]) -> [Request] {
        var requests: [Request] = []
        var rest = bytes
        // Bounded by the body (at most --max-request-bytes): each value takes at least 2 bytes.
        while case .value(let range) = GoJSONSyntax.firstValue(rest) {
            let value = Array(rest[range])
            guard value.first == UInt8(ascii: "{"),
                let request = try? Request(jsonUTF8Bytes: value, options: JSONGateway.decodingOptions)
            else { break }
            requests.append(request)
            rest = Array(rest[range.upperBound...])
        }
        return requests
    }

    /// Writes each response as a `{"result":…}` line, a batch in one chunk.
    private struct ResultLines<Response: Sendable>: RPCWriterProtocol {
        let writer: HTTPBodyWriter
        let counters: GRPCServerMetrics.MethodCounters?
        let encode: @Sendable (Response) throws -> any SwiftProtobuf.Message

        func write(_ element: Response) async throws {
            try await write(contentsOf: CollectionOfOne(element))
        }

        func write(contentsOf elements: some Sequence<Response>) async throws {
            var chunk: [UInt8] = []
            for element in elements {
                let json: [UInt8] = try encode(element).jsonUTF8Bytes(options: JSONGateway.encodingOptions)
                chunk += Array(#"{"result":"#.utf8) + json + Array("}\n".utf8)
                counters?.sent.increment()
            }
            try await writer.write(chunk)
        }
    }
}
