public import NIOCore

/// Reassembles gRPC messages from a stream's DATA frames: each message is a 5-byte prefix
/// (compressed flag, big-endian length) and its bytes, and a client may split a message over
/// any number of frames or put several messages in one.
///
/// Every byte is the client's and untrusted: a message longer than `maxMessageBytes` is refused
/// from its prefix alone, before its bytes are held, and a message flagged as compressed is
/// refused: no compression is offered, so a stream that names an encoding is refused at its
/// headers and a compressed flag here contradicts the stream's identity encoding (grpc-go's
/// server answers both the same way).
public struct GRPCMessageReader: Sendable {
    /// Why a stream's messages cannot be read; each maps to the status grpc-go answers with.
    public enum Failure: Error, Equatable, Sendable {
        /// A message longer than the limit (RESOURCE_EXHAUSTED).
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag is set, or has a value other than 0 and 1 (INTERNAL).
        case compressed(flag: UInt8)

        public var status: GRPCStatusCode {
            switch self {
            case .tooLarge: .resourceExhausted
            case .compressed: .internalError
            }
        }

        /// grpc-go's texts for the same conditions.
        public var message: String {
            switch self {
            case .tooLarge(let length, let limit):
                "grpc: received message larger than max (\(length) vs. \(limit))"
            case .compressed(let flag) where flag == 1:
                "grpc: compressed flag set with identity or empty encoding"
            case .compressed(let flag):
                "grpc: received unexpected payload format \(flag)"
            }
        }
    }

    public static let prefixBytes = 5

    public let maxMessageBytes: Int
    private var buffer: ByteBuffer?

    public init(maxMessageBytes: Int) {
        precondition(maxMessageBytes >= 0, "the message limit cannot be negative, got \(maxMessageBytes)")
        self.maxMessageBytes = maxMessageBytes
    }

    /// Bytes received and not yet part of a returned message.
    public var bufferedBytes: Int { buffer?.readableBytes ?? 0 }

    /// Adds the bytes of one DATA frame.
    public mutating func append(_ bytes: ByteBuffer) {
        guard buffer != nil else {
            buffer = bytes
            return
        }
        var incoming = bytes
        buffer?.writeBuffer(&incoming)
    }

    /// The next complete message, or nil until more bytes arrive. Throws as soon as a prefix
    /// announces a message that will be refused.
    public mutating func next() throws(Failure) -> ByteBuffer? {
        guard var bytes = buffer, bytes.readableBytes >= Self.prefixBytes else { return nil }
        let start = bytes.readerIndex
        guard let flag = bytes.getInteger(at: start, as: UInt8.self),
            let length = bytes.getInteger(at: start + 1, as: UInt32.self)
        else { return nil }
        if flag != 0 { throw .compressed(flag: flag) }
        guard Int(length) <= maxMessageBytes else { throw .tooLarge(length: Int(length), limit: maxMessageBytes) }
        guard bytes.readableBytes >= Self.prefixBytes + Int(length) else { return nil }
        bytes.moveReaderIndex(forwardBy: Self.prefixBytes)
        let message = bytes.readSlice(length: Int(length))
        buffer = bytes.readableBytes == 0 ? nil : bytes
        return message
    }
}
