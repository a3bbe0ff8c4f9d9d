import NIOCore
import Testing

@testable import EtcdLeanRPC

@Suite("Lean gRPC: message framing, grpc-timeout, status messages, windows")
struct WireTests {
    @Test("messages split over many buffers, or several in one, come out whole and in order")
    func reassembly() throws {
        let first = GRPCMessageWriter.frame(Array("hello".utf8), allocator: ByteBufferAllocator())
        let second = GRPCMessageWriter.frame(Array(repeating: 7, count: 300), allocator: ByteBufferAllocator())
        var all = first
        var copy = second
        all.writeBuffer(&copy)
        // One byte at a time: nothing comes out until a message is complete.
        var reader = GRPCMessageReader(maxMessageBytes: 1_000)
        var messages: [[UInt8]] = []
        for index in 0..<all.readableBytes {
            reader.append(all.getSlice(at: index, length: 1)!)
            while let message = try reader.next() { messages.append(Array(buffer: message)) }
        }
        #expect(messages == [Array("hello".utf8), Array(repeating: 7, count: 300)])
        #expect(reader.bufferedBytes == 0)
        // Both in one buffer.
        var together = GRPCMessageReader(maxMessageBytes: 1_000)
        together.append(all)
        #expect(try together.next().map { Array(buffer: $0) } == Array("hello".utf8))
        #expect(try together.next()?.readableBytes == 300)
        #expect(try together.next() == nil)
    }

    @Test("an empty message is a message")
    func emptyMessage() throws {
        var reader = GRPCMessageReader(maxMessageBytes: 10)
        reader.append(GRPCMessageWriter.frame([], allocator: ByteBufferAllocator()))
        #expect(try reader.next()?.readableBytes == 0)
    }

    @Test("a message over the limit is refused from its prefix, before its bytes arrive; compressed flags are refused")
    func refusals() {
        var reader = GRPCMessageReader(maxMessageBytes: 100)
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt8(0))
        prefix.writeInteger(UInt32(101))
        reader.append(prefix)
        #expect(throws: GRPCMessageReader.Failure.tooLarge(length: 101, limit: 100)) { try reader.next() }
        #expect(GRPCMessageReader.Failure.tooLarge(length: 101, limit: 100).message == "grpc: received message larger than max (101 vs. 100)")
        #expect(GRPCMessageReader.Failure.tooLarge(length: 101, limit: 100).status == .resourceExhausted)

        for flag: UInt8 in [1, 2] {
            var compressed = GRPCMessageReader(maxMessageBytes: 100)
            var bytes = ByteBuffer()
            bytes.writeInteger(flag)
            bytes.writeInteger(UInt32(1))
            bytes.writeInteger(UInt8(9))
            compressed.append(bytes)
            #expect(throws: GRPCMessageReader.Failure.compressed(flag: flag)) { try compressed.next() }
        }
        #expect(GRPCMessageReader.Failure.compressed(flag: 1).message == "grpc: compressed flag set with identity or empty encoding")
        #expect(GRPCMessageReader.Failure.compressed(flag: 2).message == "grpc: received unexpected payload format 2")
        #expect(GRPCMessageReader.Failure.compressed(flag: 2).status == .internalError)
    }

    @Test("the writer reserves the prefix and fills in the length")
    func writer() {
        let framed = GRPCMessageWriter.frame(allocator: ByteBufferAllocator(), capacityHint: 1) { $0.writeString("abcdef") }
        #expect(Array(buffer: framed) == [0, 0, 0, 0, 6] + Array("abcdef".utf8))
    }

    @Test("grpc-timeout: every unit, the 8-digit limit, and grpc-go's errors")
    func timeouts() throws {
        #expect(try GRPCTimeout.parse("1H") == .seconds(3_600))
        #expect(try GRPCTimeout.parse("2M") == .seconds(120))
        #expect(try GRPCTimeout.parse("5S") == .seconds(5))
        #expect(try GRPCTimeout.parse("250m") == .milliseconds(250))
        #expect(try GRPCTimeout.parse("7u") == .microseconds(7))
        #expect(try GRPCTimeout.parse("99999999n") == .nanoseconds(99_999_999))
        #expect(try GRPCTimeout.parse("99999999H") == .seconds(99_999_999 * 3_600))
        #expect(throws: GRPCTimeout.Malformed.self) { try GRPCTimeout.parse("S") }
        #expect(throws: GRPCTimeout.Malformed.self) { try GRPCTimeout.parse("123456789S") }
        #expect(throws: GRPCTimeout.Malformed.self) { try GRPCTimeout.parse("10x") }
        #expect(throws: GRPCTimeout.Malformed.self) { try GRPCTimeout.parse("1-S") }
        do {
            _ = try GRPCTimeout.parse("10x")
        } catch {
            #expect(error.message == "transport: malformed time-out: transport: timeout unit is not recognized: \"10x\"")
        }
    }

    @Test("grpc-message is percent-encoded outside printable ASCII and for '%', and decodes back")
    func statusMessages() {
        #expect(GRPCStatusMessage.percentEncoded("etcdserver: key is not provided") == "etcdserver: key is not provided")
        #expect(GRPCStatusMessage.percentEncoded("100% sure\n") == "100%25 sure%0A")
        #expect(GRPCStatusMessage.percentEncoded("ключ") == "%D0%BA%D0%BB%D1%8E%D1%87")
        for text in ["plain", "100% sure\n", "ключ", "%", "%%41", "tab\there"] {
            #expect(GRPCStatusMessage.percentDecoded(GRPCStatusMessage.percentEncoded(text)) == text)
        }
        #expect(GRPCStatusMessage.percentDecoded("bad %G1 and %4") == "bad %G1 and %4")
    }

    @Test("a window is given back once half of it is used, all at once")
    func windows() {
        var window = InboundWindow(target: 100)
        #expect(window.received(10) == nil)
        #expect(window.received(39) == nil)
        #expect(window.received(1) == 50)
        #expect(window.unacknowledged == 0)
        #expect(window.received(200) == 200)
    }
}
