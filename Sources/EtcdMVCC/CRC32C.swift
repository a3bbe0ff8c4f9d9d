/// CRC-32C (Castagnoli), the checksum etcd uses for its KV hash. Table-driven, no dependencies.
struct CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
        }
        return crc
    }

    private var state: UInt32 = 0xFFFF_FFFF

    init() {}

    mutating func update(_ bytes: [UInt8]) {
        let table = Self.table
        var crc = state
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8)
        }
        state = crc
    }

    mutating func update(_ value: Int64) {
        let bits = UInt64(bitPattern: value)
        update((0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * $0)) })
    }

    var value: UInt32 { state ^ 0xFFFF_FFFF }
}
