import Synchronization

/// Counts the calls running on a server's connections, so that whoever stops the server can wait
/// until the last one has ended: calls run as tasks of their own, which outlive their
/// connection by as long as they take to notice its cancellation, and each holds the services
/// (and through them the member's backend) until then.
public final class LeanRPCCallTracker: Sendable {
    private struct State {
        var running = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        /// Waiters whose timeout passed before they were registered.
        var expired: Set<Int> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Calls started and not yet ended.
    public var running: Int { state.withLock { $0.running } }

    func begin() {
        state.withLock { $0.running += 1 }
    }

    func end() {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.running -= 1
            guard state.running == 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// Returns once no call is running (true), or when `timeout` has passed first (false).
    @discardableResult
    public func waitUntilIdle(timeout: Duration) async -> Bool {
        let id = state.withLock { state -> Int in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.giveUp(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer = state.withLock { state -> Bool? in
                if state.running == 0 { return true }
                if state.expired.remove(id) != nil { return false }
                state.waiters[id] = continuation
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
    }

    private func giveUp(_ id: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.expired.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.resume(returning: false)
    }
}
