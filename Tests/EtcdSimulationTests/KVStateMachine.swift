import EtcdRaft

/// One client write: key `key` gets the unique value `writeID`. Encoded as the payload of a
/// normal entry; an empty payload is the leader's no-op entry.
struct WriteCommand: Hashable {
    static let tag: UInt8 = 0x57  // "W"

    var key: Int
    var writeID: UInt64

    func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.tag, UInt8(key)]
        Bytes.append(writeID, to: &bytes)
        return bytes
    }

    init(key: Int, writeID: UInt64) {
        self.key = key
        self.writeID = writeID
    }

    init?(encoded bytes: [UInt8]) {
        guard bytes.count == 10, bytes[0] == Self.tag, let id = Bytes.readUInt64(bytes, at: 2) else { return nil }
        self.init(key: Int(bytes[1]), writeID: id)
    }
}

/// The replicated state machine: a few registers, each holding the ID of the last write applied
/// to it and that write's log index. `chain` digests every entry applied so far (see
/// `Digest.chain`), so snapshot restores and replays can be compared with the global history.
struct KVStateMachine: Equatable {
    static let keyCount = 3

    /// Per key: the write ID last applied (0 = never written).
    var values: [UInt64] = Array(repeating: 0, count: keyCount)
    /// Per key: the log index of that write.
    var writeIndexes: [UInt64] = Array(repeating: 0, count: keyCount)
    var appliedIndex: UInt64 = 0
    var chain: UInt64 = 0

    /// Applies one committed entry; returns the write it carried, if any.
    mutating func apply(_ entry: Entry, entryDigest: UInt64) -> WriteCommand? {
        precondition(
            entry.index == appliedIndex + 1,
            "sim: state machine at \(appliedIndex) asked to apply entry \(entry.index)"
        )
        appliedIndex = entry.index
        chain = Digest.chain(chain, index: entry.index, term: entry.term, entryDigest: entryDigest)
        guard entry.type == .normal, let write = WriteCommand(encoded: entry.data) else { return nil }
        values[write.key] = write.writeID
        writeIndexes[write.key] = entry.index
        return write
    }

    /// Layout: applied index, chain, then (value, write index) per key, all big-endian UInt64.
    func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16 + 16 * Self.keyCount)
        Bytes.append(appliedIndex, to: &bytes)
        Bytes.append(chain, to: &bytes)
        for key in 0..<Self.keyCount {
            Bytes.append(values[key], to: &bytes)
            Bytes.append(writeIndexes[key], to: &bytes)
        }
        return bytes
    }

    init() {}

    /// Decodes `encoded()`; nil for bytes of the wrong shape (which a check reports).
    init?(encoded bytes: [UInt8]) {
        guard bytes.count == 16 + 16 * Self.keyCount,
            let applied = Bytes.readUInt64(bytes, at: 0),
            let chain = Bytes.readUInt64(bytes, at: 8)
        else { return nil }
        appliedIndex = applied
        self.chain = chain
        for key in 0..<Self.keyCount {
            guard let value = Bytes.readUInt64(bytes, at: 16 + 16 * key),
                let index = Bytes.readUInt64(bytes, at: 24 + 16 * key)
            else { return nil }
            values[key] = value
            writeIndexes[key] = index
        }
    }
}
