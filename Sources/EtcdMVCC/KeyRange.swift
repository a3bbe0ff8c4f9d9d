/// The keys one request addresses, in etcd's terms (`key` plus `range_end`).
public enum KeyRange: Hashable, Sendable {
    /// Exactly one key (etcd: `range_end` empty).
    case key([UInt8])
    /// Every key greater than or equal to this key (etcd: `range_end` is the single byte `\0`).
    case fromKey([UInt8])
    /// Keys in `[start, end)`; empty when `end <= start`.
    case range([UInt8], [UInt8])

    /// etcd's reading of `(key, range_end)`: an empty end names one key, `"\0"` means "this key
    /// and everything after it", anything else is a half-open interval.
    public init(key: [UInt8], rangeEnd: [UInt8]) {
        if rangeEnd.isEmpty {
            self = .key(key)
        } else if rangeEnd == [0] {
            self = .fromKey(key)
        } else {
            self = .range(key, rangeEnd)
        }
    }

    /// Whether `key` falls inside the range, comparing bytes lexicographically.
    public func contains(_ key: [UInt8]) -> Bool {
        switch self {
        case .key(let only):
            return key == only
        case .fromKey(let start):
            return compareBytes(key, start) >= 0
        case .range(let start, let end):
            return compareBytes(key, start) >= 0 && compareBytes(key, end) < 0
        }
    }

    /// The first key the range could contain.
    var start: [UInt8] {
        switch self {
        case .key(let key), .fromKey(let key), .range(let key, _): return key
        }
    }
}

/// Three-way comparison of byte strings in etcd's (Go `bytes.Compare`) order: byte by byte as
/// unsigned values, and a proper prefix sorts first. Returns -1, 0 or 1.
@inline(__always)
func compareBytes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
    lhs.withUnsafeBufferPointer { left in
        rhs.withUnsafeBufferPointer { right in
            let shared = min(left.count, right.count)
            var index = 0
            while index < shared {
                let a = left[index]
                let b = right[index]
                if a != b { return a < b ? -1 : 1 }
                index += 1
            }
            return left.count == right.count ? 0 : (left.count < right.count ? -1 : 1)
        }
    }
}
