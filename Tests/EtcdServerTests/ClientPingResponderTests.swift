import NIOCore
import NIOEmbedded
import Testing

import EtcdTransport

@Suite("Client PING responder")
struct ClientPingResponderTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        var bytes: [UInt8] = [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
        bytes += [UInt8(stream >> 24 & 0xff), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)]
        return bytes + payload
    }

    static let settings = frame(type: 0x4, payload: [0, 3, 0, 0, 0, 100])
    static let headers = frame(type: 0x1, flags: 0x4, stream: 1, payload: Array(repeating: 0x82, count: 20))
    static let data = frame(type: 0x0, flags: 0x1, stream: 1, payload: Array(0..<200).map { UInt8($0) })
    static let bdpPayload: [UInt8] = [0x02, 0x04, 0x10, 0x10, 0x09, 0x0e, 0x07, 0x07]
    static let ping = frame(type: 0x6, payload: bdpPayload)
    static let pingAck = frame(type: 0x6, flags: 0x1, payload: bdpPayload)

    /// Feeds `input` in pieces of `chunk` bytes and returns what reached the next handler and
    /// what was written back to the peer.
    static func run(_ input: [UInt8], chunk: Int) throws -> (forwarded: [UInt8], written: [UInt8]) {
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(role: .server))
        var offset = 0
        while offset < input.count {
            let end = min(offset + chunk, input.count)
            try channel.writeInbound(ByteBuffer(bytes: input[offset..<end]))
            offset = end
        }
        var forwarded: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) {
            forwarded += buffer.readableBytesView
        }
        var written: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            written += buffer.readableBytesView
        }
        _ = try channel.finish()
        return (forwarded, written)
    }

    @Test("answers PINGs itself and passes every other byte on unchanged", arguments: [1, 2, 7, 9, 17, 4096])
    func answersPings(chunk: Int) throws {
        let input = Self.preface + Self.settings + Self.ping + Self.headers + Self.ping + Self.data + Self.ping
        let (forwarded, written) = try Self.run(input, chunk: chunk)
        #expect(forwarded == Self.preface + Self.settings + Self.headers + Self.data)
        #expect(written == Self.pingAck + Self.pingAck + Self.pingAck)
    }

    @Test("passes the peer's PING ACKs on to the HTTP/2 handler, which sent the PING")
    func passesAcks() throws {
        let input = Self.preface + Self.settings + Self.pingAck
        let (forwarded, written) = try Self.run(input, chunk: 5)
        #expect(forwarded == input)
        #expect(written.isEmpty)
    }

    @Test("leaves a malformed PING to the HTTP/2 handler to reject")
    func passesMalformedPing() throws {
        let shortPing = Self.frame(type: 0x6, payload: [1, 2, 3])
        let input = Self.preface + shortPing + Self.settings
        let (forwarded, written) = try Self.run(input, chunk: 3)
        #expect(forwarded == input)
        #expect(written.isEmpty)
    }

    @Test("holds back an incomplete PING until the rest arrives")
    func holdsIncompletePing() throws {
        let channel = EmbeddedChannel(handler: HTTP2PingResponder(role: .server))
        try channel.writeInbound(ByteBuffer(bytes: Self.preface + Array(Self.ping.prefix(12))))
        var forwarded: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { forwarded += buffer.readableBytesView }
        #expect(forwarded == Self.preface)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: Array(Self.ping.dropFirst(12))))
        let ack = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(ack.readableBytesView) == Self.pingAck)
        _ = try channel.finish()
    }
}
