/// Evaluates `condition` every `interval` until it returns true or `timeout` passes.
///
/// Tests never sleep for a fixed time; they wait for the state they need, with a deadline.
///
/// - Returns: whether the condition became true before the deadline.
public func poll(
    timeout: Duration,
    interval: Duration = .milliseconds(25),
    until condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() { return true }
        if clock.now >= deadline { return false }
        // A cancelled task stops waiting, and the caller reports the unmet condition.
        do {
            try await Task.sleep(for: interval)
        } catch {
            return try await condition()
        }
    }
}
