/// A segment file's name, `%016x-%016x.wal`: its sequence number and the index of the first
/// entry expected in it, as etcd's `walName`.
struct SegmentName: Hashable, Comparable {
    var sequence: UInt64
    var firstIndex: UInt64

    static let suffix = ".wal"

    var fileName: String { hex16(sequence) + "-" + hex16(firstIndex) + Self.suffix }

    init(sequence: UInt64, firstIndex: UInt64) {
        self.sequence = sequence
        self.firstIndex = firstIndex
    }

    /// Parses a name written by `fileName`; nil for anything else (etcd ignores such files too).
    init?(fileName: String) {
        let characters = Array(fileName.utf8)
        guard characters.count == 37, fileName.hasSuffix(Self.suffix), characters[16] == UInt8(ascii: "-"),
            let sequence = parseHex16(characters[0..<16]), let firstIndex = parseHex16(characters[17..<33])
        else { return nil }
        self.init(sequence: sequence, firstIndex: firstIndex)
    }

    static func < (lhs: SegmentName, rhs: SegmentName) -> Bool { lhs.sequence < rhs.sequence }
}

/// `value` as 16 lower-case hex digits.
func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// 16 hex digits (either case) as a number; nil otherwise.
func parseHex16(_ characters: ArraySlice<UInt8>) -> UInt64? {
    guard characters.count == 16 else { return nil }
    var value: UInt64 = 0
    for character in characters {
        let digit: UInt8
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = character - UInt8(ascii: "A") + 10
        default: return nil
        }
        value = value << 4 | UInt64(digit)
    }
    return value
}
