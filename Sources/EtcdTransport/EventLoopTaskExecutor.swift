public import NIOCore

/// Runs Swift tasks on the threads of a NIO event loop group: on the loop whose thread enqueues
/// the job when that loop belongs to the group (so work stays on the thread where its bytes
/// arrived), otherwise on the group's next loop.
///
/// Used as a task executor preference, it spares a request the hops between the event loop
/// that reads and writes its socket and Swift's cooperative pool: on 2 cores those thread
/// wake-ups were a large share of both the server's and the benchmark tool's CPU. Work run this
/// way must not block for long (it holds up the loop's sockets), which is why the Raft loop's
/// fsync and apply stay on their own thread.
public final class EventLoopTaskExecutor: TaskExecutor {
    private let group: any EventLoopGroup
    private let loops: [any EventLoop]

    public init(group: any EventLoopGroup) {
        self.group = group
        self.loops = Array(group.makeIterator())
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let loop = loops.first(where: \.inEventLoop) ?? group.next()
        loop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

/// Runs Swift tasks on one event loop's thread, whichever thread enqueues the job: for work tied
/// to one connection (its reads, writes and answers), so that a task resumed from another thread
/// (the Raft loop's, the applier's) goes straight to the loop that owns the socket instead of a
/// loop picked at random and a second hop from there.
public final class SingleEventLoopTaskExecutor: TaskExecutor {
    public let loop: any EventLoop

    public init(_ loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
