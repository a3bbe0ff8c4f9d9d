import EtcdAPI
import EtcdLeanRPC
import GRPCCore
import NIOCore
import NIOHTTP1
import Prometheus
import SwiftProtobuf

/// The gateway's `POST /v3/watch`: the body's watch requests (one JSON object after another)
/// feed one watch stream, and its responses come back as chunks of `{"result":{…}}` lines for
/// as long as the client stays connected, as grpc-gateway streams them.
enum GatewayWatch {
    static func response(
        to body: ByteBuffer, service: WatchService, counters: GRPCServerMetrics.MethodCounters?
    ) -> HTTPResponse {
        let requests = decodeRequests(Array(body.readableBytesView))
        return HTTPResponse(
            status: .ok, headers: [("Content-Type", "application/json"), ("Grpc-Metadata-Content-Type", "application/grpc")],
            body: []
        ) { (writer: HTTPBodyWriter) in
            counters?.started.increment()
            let (stream, continuation) = AsyncThrowingStream<Etcdserverpb_WatchRequest, any Error>.makeStream()
            for request in requests {
                counters?.received.increment()
                continuation.yield(request)
            }
            // The client sends nothing more; its watchers stay until it goes away.
            continuation.finish()
            let code = await serve(
                service, requests: RPCAsyncSequence(wrapping: stream),
                responses: RPCWriter(wrapping: ResultLines(writer: writer, counters: counters)))
            counters?.handled(code: code).increment()
        }
    }

    /// Runs the watch until it ends (the client went away, the server stopped) and returns the
    /// status code it ended with.
    private static func serve(
        _ service: WatchService, requests: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        responses: RPCWriter<WatchWire>
    ) async -> Int {
        do {
            try await withServerContextRPCCancellationHandle { cancellation in
                let context = ServerContext(
                    descriptor: Etcdserverpb_Watch.Method.Watch.descriptor, remotePeer: "", localPeer: "",
                    cancellation: cancellation)
                // The connection closing cancels this task; the watch learns it from its context.
                try await withTaskCancellationHandler {
                    try await service.watch(request: requests, response: responses, context: context)
                } onCancel: {
                    cancellation.cancel()
                }
            }
            return 0
        } catch {
            return Int(LeanServiceTable.status(of: error).code.rawValue)
        }
    }

    /// The watch requests in the body, up to the first that does not decode.
    static func decodeRequests(_ bytes: [UInt8]) -> [Etcdserverpb_WatchRequest] {
        var requests: [Etcdserverpb_WatchRequest] = []
        var rest = bytes[...]
        // Bounded by the body (at most --max-request-bytes): each value takes at least 2 bytes.
        while case .value(let range) = GoJSONSyntax.firstValue(Array(rest)) {
            let value = Array(rest)[range]
            guard value.first == UInt8(ascii: "{"),
                let request = try? Etcdserverpb_WatchRequest(jsonUTF8Bytes: Array(value), options: JSONGateway.decodingOptions)
            else { break }
            requests.append(request)
            rest = rest.dropFirst(range.upperBound)
        }
        return requests
    }

    /// Writes each watch response as a `{"result":…}` line, a batch in one chunk.
    private struct ResultLines: RPCWriterProtocol {
        let writer: HTTPBodyWriter
        let counters: GRPCServerMetrics.MethodCounters?

        func write(_ element: WatchWire) async throws {
            try await write(contentsOf: CollectionOfOne(element))
        }

        func write(contentsOf elements: some Sequence<WatchWire>) async throws {
            var chunk: [UInt8] = []
            for wire in elements {
                let response = try Etcdserverpb_WatchResponse(serializedBytes: wire.serialized())
                let json: [UInt8] = try response.jsonUTF8Bytes(options: JSONGateway.encodingOptions)
                chunk += Array(#"{"result":"#.utf8) + json + Array("}\n".utf8)
                counters?.sent.increment()
            }
            try await writer.write(chunk)
        }
    }
}
