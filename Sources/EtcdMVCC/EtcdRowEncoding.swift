/// The bytes Go etcd stores for one MVCC row in bbolt's `key` bucket, which its HashKV checksums.
/// Our backend keeps rows in SQLite columns; hashing them in etcd's byte form makes
/// `endpoint hashkv` agree with a Go etcd member that saw the same history.
///
/// A row's bbolt key is the revision: main as 8 big-endian bytes, `_`, sub as 8 big-endian
/// bytes, then `t` if the row is a deletion. Its value is the marshalled `mvccpb.KeyValue`; a
/// deletion's carries only the key.
enum EtcdRowEncoding {
    static func appendRevisionKey(_ revision: Revision, tombstone: Bool, to bytes: inout [UInt8]) {
        appendBigEndian(revision.main, to: &bytes)
        bytes.append(UInt8(ascii: "_"))
        appendBigEndian(revision.sub, to: &bytes)
        if tombstone { bytes.append(UInt8(ascii: "t")) }
    }

    /// `mvccpb.KeyValue` in protobuf's wire form, fields in number order and zero values left
    /// out (proto3), as Go's generated marshaller writes it.
    static func appendKeyValue(_ kv: KeyValue, to bytes: inout [UInt8]) {
        appendBytesField(1, kv.key, to: &bytes)
        appendVarintField(2, kv.createRevision, to: &bytes)
        appendVarintField(3, kv.modRevision, to: &bytes)
        appendVarintField(4, kv.version, to: &bytes)
        appendBytesField(5, kv.value, to: &bytes)
        appendVarintField(6, kv.lease, to: &bytes)
    }

    private static func appendBigEndian(_ value: Int64, to bytes: inout [UInt8]) {
        let bits = UInt64(bitPattern: value)
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift)))
        }
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// An int64 field (wire type 0); negative values take ten bytes, as in every protobuf.
    private static func appendVarintField(_ number: UInt64, _ value: Int64, to bytes: inout [UInt8]) {
        guard value != 0 else { return }
        appendVarint(number << 3, to: &bytes)
        appendVarint(UInt64(bitPattern: value), to: &bytes)
    }

    /// A bytes field (wire type 2: length, then the bytes).
    private static func appendBytesField(_ number: UInt64, _ value: [UInt8], to bytes: inout [UInt8]) {
        guard !value.isEmpty else { return }
        appendVarint(number << 3 | 2, to: &bytes)
        appendVarint(UInt64(value.count), to: &bytes)
        bytes.append(contentsOf: value)
    }
}

extension KeyValue {
    /// What etcd stores for a deletion row: the key alone.
    static func tombstone(of key: [UInt8]) -> KeyValue {
        KeyValue(key: key, createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0)
    }
}
