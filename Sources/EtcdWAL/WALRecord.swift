import EtcdRaft

/// The point a snapshot covers, recorded in the WAL so that a restart knows where replay starts
/// (etcd's `walpb.Snapshot`).
public struct WALSnapshotMarker: Sendable, Hashable, CustomStringConvertible {
    public var index: UInt64
    public var term: UInt64

    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }

    /// The marker every new WAL starts with, matching an empty snapshot.
    public static let zero = WALSnapshotMarker(index: 0, term: 0)

    public var description: String { "(index \(index), term \(term))" }
}

/// One logical record. The numbering of the kinds follows etcd's `wal.go`
/// (metadataType = 1 ... snapshotType = 5), though the encoding is our own.
enum WALRecord: Hashable {
    /// Opaque bytes from the server (member and cluster IDs), repeated at the start of every segment.
    case metadata([UInt8])
    case entry(Entry)
    case hardState(HardState)
    /// The running CRC carried into a new segment; always a segment's first record.
    case crc(UInt32)
    case snapshot(WALSnapshotMarker)

    enum Kind: UInt8 {
        case metadata = 1
        case entry = 2
        case hardState = 3
        case crc = 4
        case snapshot = 5
    }

    var kind: Kind {
        switch self {
        case .metadata: .metadata
        case .entry: .entry
        case .hardState: .hardState
        case .crc: .crc
        case .snapshot: .snapshot
        }
    }

    /// Appends the record body (kind byte, then the payload, integers little-endian) to `bytes`.
    ///
    /// Payloads: entry = term u64, index u64, entry type u8, data (the rest); hard state = term,
    /// vote, commit u64; CRC = u32; snapshot = index u64, term u64; metadata = the bytes.
    func encodeBody(into bytes: inout [UInt8]) {
        bytes.append(kind.rawValue)
        switch self {
        case .metadata(let metadata):
            bytes.append(contentsOf: metadata)
        case .entry(let entry):
            bytes.appendLittleEndian(entry.term)
            bytes.appendLittleEndian(entry.index)
            bytes.append(entry.type.rawValue)
            bytes.append(contentsOf: entry.data)
        case .hardState(let state):
            bytes.appendLittleEndian(state.term)
            bytes.appendLittleEndian(state.vote.rawValue)
            bytes.appendLittleEndian(state.commit)
        case .crc(let crc):
            bytes.appendLittleEndian(crc)
        case .snapshot(let marker):
            bytes.appendLittleEndian(marker.index)
            bytes.appendLittleEndian(marker.term)
        }
    }

    /// Decodes a body written by `encodeBody`; nil when it does not parse (unknown kind, wrong
    /// payload length), which a valid CRC makes a bug or a foreign file, never a torn write.
    static func decodeBody(_ body: ArraySlice<UInt8>) -> WALRecord? {
        guard let first = body.first, let kind = Kind(rawValue: first) else { return nil }
        let payload = body.dropFirst()
        let start = payload.startIndex
        switch kind {
        case .metadata:
            return .metadata(Array(payload))
        case .entry:
            guard payload.count >= 17, let type = EntryType(rawValue: payload[start + 16]) else { return nil }
            return .entry(
                Entry(
                    term: payload.littleEndianUInt64(at: start),
                    index: payload.littleEndianUInt64(at: start + 8),
                    type: type,
                    data: Array(payload[(start + 17)...])
                )
            )
        case .hardState:
            guard payload.count == 24 else { return nil }
            return .hardState(
                HardState(
                    term: payload.littleEndianUInt64(at: start),
                    vote: NodeID(payload.littleEndianUInt64(at: start + 8)),
                    commit: payload.littleEndianUInt64(at: start + 16)
                )
            )
        case .crc:
            guard payload.count == 4 else { return nil }
            return .crc(UInt32(truncatingIfNeeded: payload.littleEndianUInt(at: start, width: 4)))
        case .snapshot:
            guard payload.count == 16 else { return nil }
            return .snapshot(
                WALSnapshotMarker(
                    index: payload.littleEndianUInt64(at: start),
                    term: payload.littleEndianUInt64(at: start + 8)
                )
            )
        }
    }
}

extension [UInt8] {
    mutating func appendLittleEndian(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func appendLittleEndian(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}

extension ArraySlice<UInt8> {
    /// The `width`-byte little-endian integer at absolute index `index`; the caller checked bounds.
    func littleEndianUInt(at index: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for byte in 0..<width { value |= UInt64(self[index + byte]) << UInt64(8 * byte) }
        return value
    }

    func littleEndianUInt64(at index: Int) -> UInt64 { littleEndianUInt(at: index, width: 8) }
}
