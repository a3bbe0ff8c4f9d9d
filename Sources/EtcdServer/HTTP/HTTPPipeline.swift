import NIOCore
import NIOHTTP1

/// How a connection is set up to serve HTTP/1.1 with an ``HTTPResponder``.
enum HTTPPipeline {
    /// Adds NIOHTTP1's server handlers (decoder, encoder, pipelining, 400 on garbage) and the
    /// endpoint handler at `position`.
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, at position: ChannelPipeline.SynchronousOperations.Position,
        responder: any HTTPResponder, maxBodyBytes: Int, extraHeaders: [(String, String)]
    ) throws {
        try pipeline.configureHTTPServerPipeline(position: position, withErrorHandling: true)
        try pipeline.addHandler(
            HTTPEndpointHandler(responder: responder, maxBodyBytes: maxBodyBytes, extraHeaders: extraHeaders),
            position: position)
    }

    /// A sniffer for a port that serves gRPC and HTTP/1.1 (see ``HTTPProtocolSniffer``).
    static func sniffer(responder: any HTTPResponder, maxBodyBytes: Int) -> HTTPProtocolSniffer {
        HTTPProtocolSniffer { pipeline, sniffer in
            try configure(
                pipeline, at: .before(sniffer), responder: responder, maxBodyBytes: maxBodyBytes,
                extraHeaders: HTTPEndpoints.corsHeaders)
        }
    }
}
