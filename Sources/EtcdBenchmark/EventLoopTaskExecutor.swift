import NIOCore

/// Runs Swift tasks on a NIO event loop thread.
///
/// With `--event-loop-executor` the client tasks and the transport's own tasks run on the same
/// single event loop that does the socket I/O, so a request needs no hop between the NIO thread
/// and the cooperative pool; at one in-flight request most of the tool's CPU went to those
/// thread wake-ups (kernel scheduling was ~40% of its profile).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
