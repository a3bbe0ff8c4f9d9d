import EtcdRaft

/// Keys as etcd's benchmark makes them: a `key-size` byte buffer holding the key number as a Go
/// `binary.PutVarint` (zig-zag varint), zero-padded.
enum KeyEncoding {
    /// Bytes the zig-zag varint of `number` takes.
    static func varintLength(_ number: Int) -> Int {
        var value = zigZag(number)
        var length = 1
        while value >= 0x80 {
            value >>= 7
            length += 1
        }
        return length
    }

    /// Writes `number` at the start of `key`, leaving the rest as it was (zeros). `key` must hold
    /// `varintLength(number)` bytes; callers check the key space fits once, up front.
    static func put(_ number: Int, into key: inout [UInt8]) {
        var value = zigZag(number)
        var index = 0
        while value >= 0x80 {
            key[index] = UInt8(truncatingIfNeeded: value) | 0x80
            value >>= 7
            index += 1
        }
        key[index] = UInt8(truncatingIfNeeded: value)
    }

    /// Checks that every key number below `keySpaceSize` fits in `keySize` bytes.
    static func validate(keySize: Int, keySpaceSize: Int) -> String? {
        guard keySpaceSize >= 1 else { return "expected positive --key-space-size, got (\(keySpaceSize))" }
        let needed = varintLength(keySpaceSize - 1)
        guard keySize >= needed else {
            return "--key-size \(keySize) cannot hold \(keySpaceSize) distinct keys (needs \(needed) bytes)"
        }
        return nil
    }

    private static func zigZag(_ number: Int) -> UInt64 {
        let value = Int64(number)
        return UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }
}

/// `size` pseudo-random bytes, as etcd's `mustRandBytes` makes values.
func randomBytes(_ size: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix64(seed: seed)
    return (0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
}
