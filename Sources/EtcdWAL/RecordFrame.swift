/// How records are framed inside a segment file.
///
/// Every frame starts at a multiple of 8 bytes (as etcd's records are 8-byte aligned):
///
///     offset  0  u32  body length (kind byte + payload), at least 1
///     offset  4  u32  previous CRC: the chain value before this record
///     offset  8  u32  CRC-32C of the body, continued from the previous CRC (the chain)
///     offset 12  u32  CRC-32C of bytes 0..<12 (the header alone)
///     offset 16       body, then zero padding to the next multiple of 8
///
/// The chained CRC is etcd's: each record's CRC covers the previous CRC and its own data, so a
/// record that is valid on its own but out of place breaks the chain. The header CRC and the
/// explicit previous CRC make every frame checkable without its predecessor, which is what lets
/// recovery tell a torn tail (nothing valid after the damage) from corruption in the middle
/// (valid frames after it) — and scan garbage cheaply, since a random header passes with
/// probability 2^-32 before any body is checksummed.
enum RecordFrame {
    static let headerBytes = 16
    static let alignmentBytes = 8

    /// Frames `record` after the chain value `previousCRC` and appends it to `buffer`; returns
    /// the new chain value.
    static func append(_ record: WALRecord, previousCRC: UInt32, to buffer: inout [UInt8]) -> UInt32 {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: headerBytes))
        record.encodeBody(into: &buffer)
        let bodyCount = buffer.count - start - headerBytes
        let crc = CRC32C.checksum(buffer[(start + headerBytes)...], seed: previousCRC)
        buffer.append(contentsOf: repeatElement(0, count: padding(bodyCount)))
        var header: [UInt8] = []
        header.reserveCapacity(headerBytes)
        header.appendLittleEndian(UInt32(bodyCount))
        header.appendLittleEndian(previousCRC)
        header.appendLittleEndian(crc)
        header.appendLittleEndian(CRC32C.checksum(header))
        buffer.replaceSubrange(start..<(start + headerBytes), with: header)
        return crc
    }

    static func padding(_ bodyCount: Int) -> Int {
        (alignmentBytes - bodyCount % alignmentBytes) % alignmentBytes
    }

    /// One frame read back.
    struct Decoded {
        var offset: Int
        var record: WALRecord
        var previousCRC: UInt32
        var crc: UInt32
        /// Offset of the next frame.
        var end: Int
    }

    enum Parse {
        case frame(Decoded)
        /// The frame's checksums pass but its body does not decode: written that way, not torn.
        case undecodable(reason: String)
        case invalid(reason: String)
    }

    /// Parses the frame at `offset` on its own (without checking the chain).
    static func parse(_ bytes: [UInt8], at offset: Int) -> Parse {
        guard offset + headerBytes <= bytes.count else {
            return .invalid(reason: "header cut short (\(bytes.count - offset) of \(headerBytes) bytes)")
        }
        let slice = bytes[offset..<(offset + headerBytes)]
        let bodyCount = Int(slice.littleEndianUInt(at: offset, width: 4))
        let previousCRC = UInt32(truncatingIfNeeded: slice.littleEndianUInt(at: offset + 4, width: 4))
        let crc = UInt32(truncatingIfNeeded: slice.littleEndianUInt(at: offset + 8, width: 4))
        let headerCRC = UInt32(truncatingIfNeeded: slice.littleEndianUInt(at: offset + 12, width: 4))
        guard CRC32C.checksum(bytes[offset..<(offset + 12)]) == headerCRC else {
            return .invalid(reason: "header checksum mismatch")
        }
        let bodyStart = offset + headerBytes
        let end = bodyStart + bodyCount + padding(bodyCount)
        guard bodyCount >= 1, end <= bytes.count else {
            return .invalid(reason: "record length \(bodyCount) does not fit the file (\(bytes.count) bytes)")
        }
        let body = bytes[bodyStart..<(bodyStart + bodyCount)]
        guard CRC32C.checksum(body, seed: previousCRC) == crc else {
            return .invalid(reason: "data CRC mismatch")
        }
        guard let record = WALRecord.decodeBody(body) else {
            return .undecodable(reason: "record of kind \(body[bodyStart]) with \(bodyCount) body bytes does not decode")
        }
        return .frame(Decoded(offset: offset, record: record, previousCRC: previousCRC, crc: crc, end: end))
    }
}

/// The frames of one segment file and how its data ends. Pure: no I/O, no chain checks (the
/// chain spans segments, so the WAL checks it).
struct SegmentScan {
    enum End: Equatable {
        /// Data ends at `offset`; everything after it (if anything) is zero, as preallocated.
        case clean(offset: Int)
        /// The frame at `offset` is damaged and no valid frame follows it: a torn write, which
        /// recovery may truncate away when this is the last segment.
        case torn(offset: Int, reason: String)
        /// The frame at `offset` is damaged and valid data follows (or its checksums pass and it
        /// still does not decode): never repaired, because it may hide acknowledged records.
        case corrupt(offset: Int, reason: String)
    }

    var frames: [RecordFrame.Decoded] = []
    var end: End

    init(_ bytes: [UInt8]) {
        var offset = 0
        var frames: [RecordFrame.Decoded] = []
        // Each pass consumes at least one aligned frame, so the loop is bounded by the file size.
        while true {
            if offset == bytes.count {
                end = .clean(offset: offset)
                break
            }
            switch RecordFrame.parse(bytes, at: offset) {
            case .frame(let frame):
                frames.append(frame)
                offset = frame.end
                continue
            case .undecodable(let reason):
                end = .corrupt(offset: offset, reason: reason)
            case .invalid(let reason):
                if Self.isZero(bytes, from: offset) {
                    end = .clean(offset: offset)
                } else if let next = Self.nextValidFrame(bytes, after: offset) {
                    end = .corrupt(offset: offset, reason: reason + "; a valid record follows at offset \(next)")
                } else {
                    end = .torn(offset: offset, reason: reason)
                }
            }
            break
        }
        self.frames = frames
    }

    /// Whether every byte from `offset` on is zero: the preallocated rest of a segment. Compares
    /// eight bytes at a time, since a 64 MB tail is checked on every open.
    static func isZero(_ bytes: [UInt8], from offset: Int) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var position = offset
            while position + 8 <= buffer.count {
                if buffer.loadUnaligned(fromByteOffset: position, as: UInt64.self) != 0 { return false }
                position += 8
            }
            while position < buffer.count {
                if buffer[position] != 0 { return false }
                position += 1
            }
            return true
        }
    }

    /// The offset of the first aligned frame after `offset` that is valid on its own.
    static func nextValidFrame(_ bytes: [UInt8], after offset: Int) -> Int? {
        var candidate = offset + RecordFrame.alignmentBytes
        while candidate + RecordFrame.headerBytes <= bytes.count {
            if case .frame = RecordFrame.parse(bytes, at: candidate) { return candidate }
            candidate += RecordFrame.alignmentBytes
        }
        return nil
    }
}
