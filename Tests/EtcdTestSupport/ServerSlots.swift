import Foundation
import Synchronization

/// A counting semaphore for async code that bounds how many servers run at once.
///
/// The machine has two cores; a dozen etcd servers starting together would make every test slow
/// and flaky, so ``withEtcd(_:options:_:)`` takes a permit for each server it runs.
public final class ServerSlots: Sendable {
    /// The limit for all tests in the process: env `ETCD_TEST_MAX_SERVERS`, default 4.
    public static let shared = ServerSlots(
        permits: ProcessInfo.processInfo.environment["ETCD_TEST_MAX_SERVERS"].flatMap { Int($0) } ?? 4
    )

    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    public init(permits: Int) {
        precondition(permits > 0, "a semaphore needs at least one permit, got \(permits)")
        state = Mutex(State(available: permits))
    }

    /// Runs `body` while holding one permit, waiting in FIFO order for a free one.
    public func withPermit<Result>(_ body: () async throws -> Result) async throws -> Result {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    private func release() {
        // A waiter inherits the permit directly, so the count never goes above the limit.
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
