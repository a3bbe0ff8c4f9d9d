import EtcdTestSupport
import Testing

@Suite("Linearizability checker")
struct LinearizabilityCheckerTests {
    @Test("placeholder")
    func placeholder() {}
}
