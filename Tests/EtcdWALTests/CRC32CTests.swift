@testable import EtcdWAL
import Testing

@Suite struct CRC32CTests {
    @Test("CRC-32C of \"123456789\" is the published check value 0xE3069283")
    func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test("continuing from a seed equals checksumming the concatenation")
    func chaining() {
        let whole = Array("hello, write-ahead log".utf8)
        let first = CRC32C.checksum(Array(whole[..<7]))
        #expect(CRC32C.checksum(Array(whole[7...]), seed: first) == CRC32C.checksum(whole))
    }
}
