import Synchronization

/// Fired once when the server begins to stop, so that streams that never end by themselves
/// (LeaseKeepAlive) can end instead of holding the graceful shutdown open.
final class ShutdownSignal: Sendable {
    private enum Waiter {
        /// Registered, not yet suspended.
        case pending
        case waiting(CheckedContinuation<Void, Never>)
    }

    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: Waiter] = [:]
    }

    private let state = Mutex(State())

    var isFired: Bool { state.withLock { $0.fired } }

    /// Wakes every waiter, now and later.
    func fire() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            let waiting = state.waiters.values.compactMap { waiter -> CheckedContinuation<Void, Never>? in
                if case .waiting(let continuation) = waiter { return continuation }
                return nil
            }
            state.waiters.removeAll()
            return waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    /// Returns once the signal fires, or when the task is cancelled.
    func wait() async {
        let id = state.withLock { state -> Int? in
            guard !state.fired else { return nil }
            state.nextID += 1
            state.waiters[state.nextID] = .pending
            return state.nextID
        }
        guard let id else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    // Fired or cancelled before this task suspended: the entry is gone.
                    guard state.waiters[id] != nil else { return true }
                    state.waiters[id] = .waiting(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            if case .waiting(let continuation) = waiter { continuation.resume() }
        }
    }
}

extension ShutdownSignal {
    /// Sleeps `duration`; false if the server began to stop meanwhile (at once, not at the end).
    func sleep(_ duration: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(for: duration)
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                await self.wait()
                return false
            }
            let slept = await group.next() ?? false
            group.cancelAll()
            return slept && !self.isFired
        }
    }
}
