import NIOCore
import NIOEmbedded
import Synchronization
import Testing

import EtcdTransport

@Suite("Client-side PING responder")
struct ServerPingResponderTests {
    /// An HTTP/2 frame: 9-byte header then payload.
    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        var bytes: [UInt8] = [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags]
        bytes += [UInt8(stream >> 24 & 0xFF), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)]
        return bytes + payload
    }

    static let settings = frame(type: 0x4, payload: [])
    static let ping = frame(type: 0x6, payload: [2, 4, 16, 16, 9, 14, 7, 7])
    static let pingAck = frame(type: 0x6, flags: 0x1, payload: [2, 4, 16, 16, 9, 14, 7, 7])
    static let data = frame(type: 0x0, stream: 1, payload: Array(repeating: 0x6, count: 20))
    static let goaway = frame(type: 0x7, payload: [0, 0, 0, 0, 0, 0, 0, 11])

    /// Feeds `chunks` one read each; returns what reached the next handler and what went back out.
    static func run(_ chunks: [[UInt8]], counters: HTTP2ConnectionCounters) throws -> (forwarded: [UInt8], written: [UInt8]) {
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(role: .client, counters: counters))
        for chunk in chunks {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
        }
        var forwarded: [UInt8] = []
        while var buffer = try channel.readInbound(as: ByteBuffer.self) {
            forwarded += buffer.readBytes(length: buffer.readableBytes) ?? []
        }
        var written: [UInt8] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            written += buffer.readBytes(length: buffer.readableBytes) ?? []
        }
        _ = try channel.finish()
        return (forwarded, written)
    }

    @Test("A server PING is answered with its ACK and never reaches the HTTP/2 handler")
    func answersPing() throws {
        let counters = HTTP2ConnectionCounters()
        let result = try Self.run([Self.settings + Self.ping + Self.data], counters: counters)
        #expect(result.forwarded == Self.settings + Self.data)
        #expect(result.written == Self.pingAck)
        #expect(counters.pingsAnswered.load(ordering: .relaxed) == 1)
    }

    @Test("Frames split across reads at every byte still parse; DATA payloads that look like PINGs pass")
    func splitReads() throws {
        let stream = Self.settings + Self.data + Self.ping + Self.pingAck + Self.goaway
        let counters = HTTP2ConnectionCounters()
        let result = try Self.run(stream.map { [$0] }, counters: counters)
        #expect(result.forwarded == Self.settings + Self.data + Self.pingAck + Self.goaway)
        #expect(result.written == Self.pingAck)
        #expect(counters.goawaysReceived.load(ordering: .relaxed) == 1)
    }
}
