import EtcdRaft

/// The simulator's single source of randomness. Every decision of a run (cluster shape, fault
/// rates, schedule, election timeouts) is drawn from here, so one seed replays a run exactly.
///
/// Never mix in `SystemRandomNumberGenerator`, `Hasher` or `Dictionary`/`Set` iteration order:
/// Swift seeds hashing per process, and any of them would make a seed unreproducible.
struct SimRandom {
    private var generator: SplitMix64

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// A uniform integer in `0..<bound`; `bound` must be positive.
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "sim: random bound must be positive, was \(bound)")
        return Int(next() % UInt64(bound))
    }

    /// A uniform integer in `range`.
    mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + below(range.upperBound - range.lowerBound + 1)
    }

    /// True with probability `probability` (0 never draws, so a zero rate costs one comparison).
    mutating func chance(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        return Double(next() >> 11) * 0x1.0p-53 < probability
    }

    /// A uniform double in `[low, high)`.
    mutating func double(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) * 0x1.0p-53
    }

    /// One element of a non-empty array.
    mutating func pick<T>(_ elements: [T]) -> T {
        elements[below(elements.count)]
    }
}

/// FNV-1a, 64 bit: a stable digest for entries and state (unlike `Hasher`, it is the same in
/// every process, so digests can be printed and compared across replays).
struct Digest {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    mutating func add(_ word: UInt64) {
        var remaining = word
        for _ in 0..<8 {
            add(UInt8(truncatingIfNeeded: remaining))
            remaining >>= 8
        }
    }

    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes { add(byte) }
    }

    /// The digest of one log entry's content (its type and payload; index and term are keys).
    static func entry(_ entry: Entry) -> UInt64 {
        var digest = Digest()
        digest.add(entry.type.rawValue)
        digest.add(UInt64(entry.data.count))
        digest.add(entry.data)
        return digest.value
    }

    /// The state-machine chain: the digest after applying `entryDigest` at `index` on top of
    /// `previous`. Two nodes with equal chains at an index applied the same entries up to it.
    static func chain(_ previous: UInt64, index: UInt64, term: UInt64, entryDigest: UInt64) -> UInt64 {
        var digest = Digest()
        digest.add(previous)
        digest.add(index)
        digest.add(term)
        digest.add(entryDigest)
        return digest.value
    }
}

/// Big-endian UInt64 encoding for entry payloads, read contexts and snapshot data.
enum Bytes {
    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    static func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64? {
        guard offset >= 0, offset + 8 <= bytes.count else { return nil }
        var value: UInt64 = 0
        for byte in bytes[offset..<(offset + 8)] { value = value << 8 | UInt64(byte) }
        return value
    }
}
