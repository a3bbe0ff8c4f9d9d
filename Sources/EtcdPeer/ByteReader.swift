/// Reads little-endian integers and length-prefixed byte strings from a frame, throwing (never
/// trapping) when the frame is shorter than its fields say.
struct ByteReader {
    private let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    var remaining: Int { bytes.count - offset }

    mutating func uint8(_ what: String) throws(PeerCodecError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(what: what) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint32(_ what: String) throws(PeerCodecError) -> UInt32 {
        UInt32(truncatingIfNeeded: try integer(width: 4, what))
    }

    mutating func uint64(_ what: String) throws(PeerCodecError) -> UInt64 {
        try integer(width: 8, what)
    }

    /// A count or length (u32) that must not exceed `limit`, nor the bytes that are left when
    /// each item takes at least `minimumItemBytes`: a frame cannot announce more than it holds.
    mutating func count(_ what: String, limit: Int, minimumItemBytes: Int) throws(PeerCodecError) -> Int {
        let value = Int(try uint32(what))
        guard value <= limit else { throw .tooLarge(what: what, size: UInt64(value), limit: UInt64(limit)) }
        guard value * minimumItemBytes <= remaining else { throw .truncated(what: what) }
        return value
    }

    /// A u32 length, then that many bytes (at most `limit`).
    mutating func lengthPrefixed(_ what: String, limit: Int) throws(PeerCodecError) -> [UInt8] {
        let length = try count(what, limit: limit, minimumItemBytes: 1)
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    private mutating func integer(width: Int, _ what: String) throws(PeerCodecError) -> UInt64 {
        guard remaining >= width else { throw .truncated(what: what) }
        var value: UInt64 = 0
        for position in 0..<width {
            value |= UInt64(bytes[offset + position]) << (8 * UInt64(position))
        }
        offset += width
        return value
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian(_ value: UInt64) {
        for position in 0..<8 { append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(position)))) }
    }

    mutating func appendLittleEndian(_ value: UInt32) {
        for position in 0..<4 { append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(position)))) }
    }

    /// A u32 length, then the bytes.
    mutating func appendLengthPrefixed(_ bytes: [UInt8]) {
        appendLittleEndian(UInt32(bytes.count))
        append(contentsOf: bytes)
    }
}
