import Testing

@testable import EtcdLeanRPC

@Suite("Lean gRPC: the call tracker")
struct CallTrackerTests {
    @Test("waiting returns when the last call ends, or false once the timeout passes first")
    func waitUntilIdle() async throws {
        let tracker = LeanRPCCallTracker()
        #expect(await tracker.waitUntilIdle(timeout: .seconds(1)), "no call: idle at once")
        tracker.begin()
        tracker.begin()
        #expect(await !tracker.waitUntilIdle(timeout: .milliseconds(20)), "two calls running")
        let waiting = Task { await tracker.waitUntilIdle(timeout: .seconds(30)) }
        tracker.end()
        #expect(tracker.running == 1)
        tracker.end()
        #expect(await waiting.value, "the last call ended")
    }
}
