import EtcdBackend
import Testing

@testable import EtcdMVCC

/// Programming errors trap with a message naming the revision (checked in a child process).
@Suite("MVCCStore misuse traps")
struct MisuseTests {
    @Test("beginWrite outside a batch traps")
    func writeOutsideBatch() async {
        await #expect(processExitsWith: .failure) {
            let store = try MVCCStore(backend: Backend(path: nil))
            _ = store.beginWrite()
        }
    }

    @Test("ending a write transaction twice traps")
    func endTwice() async {
        await #expect(processExitsWith: .failure) {
            let store = try MVCCStore(backend: Backend(path: nil))
            try store.beginBatch()
            let txn = store.beginWrite()
            txn.end()
            txn.end()
        }
    }

    @Test("a second write transaction while one is open traps")
    func overlappingWrites() async {
        await #expect(processExitsWith: .failure) {
            let store = try MVCCStore(backend: Backend(path: nil))
            try store.beginBatch()
            _ = store.beginWrite()
            _ = store.beginWrite()
        }
    }

    @Test("a put at a revision older than the key's last one traps")
    func staleRevision() async {
        await #expect(processExitsWith: .failure) {
            var index = KeyIndex()
            index.put(Revision(main: 5, sub: 0))
            index.put(Revision(main: 4, sub: 0))
        }
    }
}
