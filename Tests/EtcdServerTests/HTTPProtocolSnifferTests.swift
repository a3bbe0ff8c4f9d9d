import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing

@testable import EtcdServer

/// The sniffer in front of the client port's HTTP/2 handlers: HTTP/2 passes through as if it
/// were not there, HTTP/1.1 is served by the HTTP handlers, whichever way the first bytes are
/// split across reads.
@Suite("HTTP protocol sniffer")
struct HTTPProtocolSnifferTests {
    static let preface = HTTPProtocolSniffer.http2Preface
    /// What the stand-in for the HTTP/2 handlers writes as the connection becomes active (the
    /// server's SETTINGS, for the real ones).
    static let serverGreeting = ByteBuffer(string: "server SETTINGS")

    /// Stands in for the HTTP/2 handlers behind the sniffer: greets on activation and records
    /// what reaches it.
    final class HTTP2StandIn: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let receivedBytes = Mutex<[UInt8]>([])
        var received: [UInt8] { receivedBytes.withLock { $0 } }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(HTTPProtocolSnifferTests.serverGreeting), promise: nil)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            receivedBytes.withLock { $0 += bytes.readableBytesView }
        }
    }

    struct VersionResponder: HTTPResponder {
        func respond(to request: HTTPRequest) async -> HTTPResponse {
            HTTPResponse(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("\(request.method) \(request.path)".utf8))
        }
    }

    static func channel(standIn: HTTP2StandIn) async throws -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(HTTPPipeline.sniffer(responder: VersionResponder(), maxBodyBytes: 1 << 16))
            try channel.pipeline.syncOperations.addHandler(standIn)
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2379)).get()
        return channel
    }

    static func feed(_ channel: NIOAsyncTestingChannel, _ bytes: [UInt8], chunk: Int) async throws {
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            try await channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
    }

    @Test("Decides only once the bytes rule the HTTP/2 preface in or out", arguments: [
        ("", nil), ("P", nil), ("PRI * HTTP/2.0\r\n", nil), ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .http2),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0", .http2), ("PO", .http1), ("GET / HTTP/1.1\r\n", .http1),
        ("PRI * HTTP/1.1\r\n", .http1),
    ] as [(String, HTTPProtocolSniffer.Decision?)])
    func decisions(bytes: String, expected: HTTPProtocolSniffer.Decision?) {
        #expect(HTTPProtocolSniffer.decide(ByteBuffer(string: bytes).readableBytesView) == expected)
    }

    @Test("An HTTP/2 preface split across reads reaches the HTTP/2 handlers, after their held greeting", arguments: [1, 5, 23, 24, 100])
    func http2PassesThrough(chunk: Int) async throws {
        let standIn = HTTP2StandIn()
        let channel = try await Self.channel(standIn: standIn)
        // Nothing of HTTP/2 goes out before the client has said which protocol it speaks.
        #expect(try await channel.readOutbound(as: ByteBuffer.self) == nil)
        let frames: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]
        try await Self.feed(channel, Self.preface + frames, chunk: chunk)
        #expect(try await channel.readOutbound(as: ByteBuffer.self) == Self.serverGreeting)
        #expect(standIn.received == Self.preface + frames)
        // Its work done, the sniffer has left the pipeline.
        let snifferLeft = try await channel.testingEventLoop.executeInContext {
            (try? channel.pipeline.syncOperations.handler(type: HTTPProtocolSniffer.self)) == nil
        }
        #expect(snifferLeft)
        _ = try await channel.finish()
    }

    @Test("An HTTP/1.1 request split across reads is answered over HTTP/1.1, with no HTTP/2 bytes", arguments: [1, 2, 7, 1000])
    func http1IsServed(chunk: Int) async throws {
        let standIn = HTTP2StandIn()
        let channel = try await Self.channel(standIn: standIn)
        // "P" could still start the HTTP/2 preface; "PO" cannot.
        let request = Array("POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}".utf8)
        try await Self.feed(channel, request, chunk: chunk)
        var response: [UInt8] = []
        while !String(decoding: response, as: UTF8.self).hasSuffix("POST /v3/kv/range") {
            let part = try await channel.waitForOutboundWrite(as: IOData.self)
            guard case .byteBuffer(let buffer) = part else {
                Issue.record("unexpected file region written")
                return
            }
            response += buffer.readableBytesView
        }
        let text = String(decoding: response, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(!text.contains("SETTINGS"))
        #expect(standIn.received.isEmpty)
        _ = try await channel.finish()
    }
}
