import Foundation

/// Runs the simulation's CPU-bound work on threads of its own, one piece at a time.
///
/// A synchronous test runs on Swift's cooperative pool, which has one thread per core: the
/// shards of the simulation held both threads of this two-core machine for the first ~90 s of
/// the full suite, and every other test waiting on that pool (timers, I/O completions,
/// deadlines) stalled meanwhile, some past their own timeouts. Here each piece runs on a new
/// thread and the pieces take turns, so the simulation uses about one core and the pool stays
/// free. The work must not record issues itself (a bare thread has no test context): it returns
/// what the caller should record.
enum OffPoolRunner {
    private static let turn = NSLock()

    static func run<Result: Sendable>(_ work: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { (finished: CheckedContinuation<Result, Never>) in
            let thread = Thread {
                turn.lock()
                let result = work()
                turn.unlock()
                finished.resume(returning: result)
            }
            thread.name = "simulation"
            thread.start()
        }
    }
}
