public import NIOCore

/// Frames one gRPC message: the 5-byte prefix (uncompressed, big-endian length) followed by the
/// message, in one buffer, with the prefix's room reserved before the message is encoded so that
/// nothing is copied afterwards.
public enum GRPCMessageWriter {
    /// Writes a message of unknown length: `encode` appends the message to the buffer it is
    /// given; the prefix is filled in afterwards.
    public static func frame(
        allocator: ByteBufferAllocator, capacityHint: Int = 64, _ encode: (inout ByteBuffer) throws -> Void
    ) rethrows -> ByteBuffer {
        var buffer = allocator.buffer(capacity: GRPCMessageReader.prefixBytes + capacityHint)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(0))
        try encode(&buffer)
        let length = buffer.writerIndex - buffer.readerIndex - GRPCMessageReader.prefixBytes
        buffer.setInteger(UInt32(truncatingIfNeeded: length), at: buffer.readerIndex + 1)
        return buffer
    }

    /// Frames bytes that are already encoded.
    public static func frame(_ message: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        frame(allocator: allocator, capacityHint: message.count) { $0.writeBytes(message) }
    }
}
