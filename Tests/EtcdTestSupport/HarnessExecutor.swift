import Foundation
import Synchronization

/// A task executor with a thread of its own, for the harnesses that watch real processes
/// against wall-clock deadlines (clusters, crash and fault tests).
///
/// The whole test run shares Swift's cooperative pool, which has one thread per core: two
/// CPU-bound tests elsewhere in the run hold both threads of this machine for seconds, and a
/// harness waiting on that pool then misses its deadlines (a cluster "not healthy within 30 s"
/// whose members were ready all along). Work preferring this executor keeps running meanwhile.
public final class HarnessExecutor: TaskExecutor, @unchecked Sendable {
    /// One thread for every harness in the process; clusters run one at a time.
    public static let shared = HarnessExecutor(name: "etcd-test-harness")

    // The jobs waiting for the thread; guarded by `condition`, which the thread sleeps on.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init(name: String) {
        let thread = Thread { [unowned self] in self.runJobs() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
