import EtcdLeanRPC
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP/1.1 request as the endpoints see it: the whole body read (bounded).
struct HTTPRequest: Sendable {
    var method: HTTPMethod
    /// The path without the query, e.g. `/v3/kv/range`.
    var path: String
    /// The query's parameters in order, decoded; a name may repeat (`?exclude=A&exclude=B`).
    var query: [(name: String, value: String)]
    var body: ByteBuffer
    /// The auth token the request carries, as grpc-gateway forwards it: `Grpc-Metadata-Token`
    /// (gRPC metadata `token`), else `Authorization` (metadata `authorization`).
    var token: String?
    /// The CommonName of the client's verified certificate, on a TLS connection of a server with
    /// `--client-cert-auth` (see ``TLSConnectionGuard``); nil otherwise. etcd refuses gateway
    /// requests that carry one when auth is on.
    var clientCertificateCommonName: String?

    init(method: HTTPMethod, uri: String, body: ByteBuffer, headers: HTTPHeaders = [:]) {
        self.method = method
        self.body = body
        token = headers.first(name: "Grpc-Metadata-Token") ?? headers.first(name: "Authorization")
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts.first.map(String.init) ?? uri
        query = parts.count > 1 ? Self.parseQuery(parts[1]) : []
    }

    func queryValues(_ name: String) -> [String] { query.filter { $0.name == name }.map(\.value) }

    static func parseQuery(_ text: Substring) -> [(name: String, value: String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ part: Substring) -> String {
                let spaced = part.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (decoded(parts[0]), parts.count > 1 ? decoded(parts[1]) : "")
        }
    }
}

/// What an endpoint answers.
struct HTTPResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: [(String, String)]
    var body: [UInt8]
    /// For a response streamed in chunks after `body` (the gateway's watch): writes them until
    /// it returns; cancelled when the client goes away.
    var stream: (@Sendable (HTTPBodyWriter) async -> Void)?

    init(
        status: HTTPResponseStatus, headers: [(String, String)] = [], body: [UInt8],
        stream: (@Sendable (HTTPBodyWriter) async -> Void)? = nil
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    /// A response as Go's `http.Error` writes one: plain text with a newline, not to be sniffed.
    static func goError(_ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        HTTPResponse(
            status: status,
            headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
            body: Array((message + "\n").utf8))
    }

    static func methodNotAllowed(allow: String) -> HTTPResponse {
        var response = goError(.methodNotAllowed, "Method Not Allowed")
        response.headers.append(("Allow", allow))
        return response
    }
}

/// Sends one chunk of a streamed response, once the connection has taken it; throws once the
/// connection is gone.
struct HTTPBodyWriter: Sendable {
    let write: @Sendable ([UInt8]) async throws -> Void
}

/// Answers requests; one value serves every connection of a listener.
protocol HTTPResponder: Sendable {
    func respond(to request: HTTPRequest) async -> HTTPResponse
}

/// Serves HTTP/1.1 requests (after NIOHTTP1's decoder and pipelining handler) with an
/// ``HTTPResponder``, one at a time per connection, each answered from a task on the
/// connection's event loop.
///
/// Bodies are bounded (etcd's gateway takes up to its gRPC limit): past `maxBodyBytes` the
/// request is answered 413 without being read further. A drain (the server stopping) closes
/// the connection once the request in flight, if any, is answered.
final class HTTPEndpointHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: any HTTPResponder
    private let maxBodyBytes: Int
    private let extraHeaders: [(String, String)]
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var bodyTooLarge = false
    private var inFlight = false
    private var draining = false
    /// The task writing a streamed response, cancelled if the connection closes first.
    private var streaming: Task<Void, Never>?
    /// The connection's verified client certificate CommonName, if any (read once it is added).
    private var clientCommonName: String?

    /// - Parameter extraHeaders: headers every response carries (etcd's CORS headers on the
    ///   client port).
    init(responder: any HTTPResponder, maxBodyBytes: Int, extraHeaders: [(String, String)] = []) {
        self.responder = responder
        self.maxBodyBytes = maxBodyBytes
        self.extraHeaders = extraHeaders
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // HTTP/1.1 is chosen after the TLS handshake, so the guard has admitted the client by now.
        clientCommonName = try? context.pipeline.syncOperations.handler(type: TLSConnectionGuard.self).verifiedCommonName
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            bodyTooLarge = false
        case .body(var chunk):
            guard !bodyTooLarge else { return }
            if body.readableBytes + chunk.readableBytes > maxBodyBytes {
                bodyTooLarge = true
                body.clear()
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            inFlight = true
            if bodyTooLarge {
                write(HTTPResponse.goError(.payloadTooLarge, "Request Entity Too Large"), for: head, context: context)
                return
            }
            var parsed = HTTPRequest(method: head.method, uri: head.uri, body: body, headers: head.headers)
            parsed.clientCertificateCommonName = clientCommonName
            let request = parsed
            body = ByteBuffer()
            let responder = self.responder
            let answered = context.eventLoop.makePromise(of: HTTPResponse.self)
            answered.completeWithTask { await responder.respond(to: request) }
            answered.futureResult.assumeIsolated().whenSuccess { response in
                self.write(response, for: head, context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        streaming?.cancel()
        streaming = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The lean listeners drain their connections with this event; an HTTP/1.1 connection
        // closes once idle. (Not passed on: the HTTP/2 handlers behind have no connection here.)
        guard event is LeanRPCServerHandler.Drain else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        draining = true
        // A stream never ends by itself; the server stopping ends it.
        streaming?.cancel()
        if !inFlight { context.close(promise: nil) }
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        if let stream = response.stream {
            startStreaming(stream, response: response, for: request, context: context)
            return
        }
        inFlight = false
        let keepAlive = request.isKeepAlive && !draining
        var headers = HTTPHeaders(extraHeaders)
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// Sends the head (chunked: the length is unknown), then lets `stream` write chunks from a
    /// task of the connection's own; the connection closes when the stream ends.
    private func startStreaming(
        _ stream: @escaping @Sendable (HTTPBodyWriter) async -> Void, response: HTTPResponse, for request: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders(extraHeaders)
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.writeAndFlush(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))),
            promise: nil)
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: eventLoop)
        let writer = HTTPBodyWriter { bytes in
            try await eventLoop.flatSubmit {
                let (handler, context) = bound.value
                guard context.channel.isActive else { return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                let buffer = context.channel.allocator.buffer(bytes: bytes)
                return context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(buffer))))
            }.get()
        }
        // Unstructured, but bounded by the connection: cancelled when it closes or drains.
        streaming = Task {
            await stream(writer)
            eventLoop.execute {
                let (handler, context) = bound.value
                handler.streaming = nil
                handler.inFlight = false
                context.writeAndFlush(handler.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
        }
    }
}
