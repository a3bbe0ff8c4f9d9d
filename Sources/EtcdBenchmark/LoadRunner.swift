import GRPCCore
import Synchronization

/// One client's view of a workload: it turns a request number into a request, then sends it.
///
/// A worker is made inside its client's task and used only there, so it can keep its request
/// message and mutate it in place between calls instead of building a new one each time.
protocol LoadWorker: SendableMetatype {
    /// Prepares request number `index` and says which of the phase's request classes it belongs
    /// to (txn-mixed reports reads and writes apart; other workloads have one class).
    mutating func prepare(_ index: Int) -> Int
    /// Sends the prepared request and waits for its response.
    mutating func send() async throws
}

/// Hands out request numbers `0..<total` to the client tasks, paced by `--rate` and cut off by
/// `--duration`. Lock-free: one atomic increment per request.
final class RequestDispenser: Sendable {
    private let next = Atomic<Int>(0)
    let total: Int
    private let startNanoseconds: UInt64
    private let deadlineNanoseconds: UInt64
    /// Request `i` is due `i * interval` after the start: etcd's limiter with a burst of one.
    private let intervalNanoseconds: UInt64

    init(total: Int, ratePerSecond: Int, durationSeconds: Double) {
        self.total = total
        startNanoseconds = ProcessClock.nowNanoseconds()
        deadlineNanoseconds =
            durationSeconds > 0 ? startNanoseconds + UInt64(durationSeconds * 1e9) : UInt64.max
        intervalNanoseconds = ratePerSecond > 0 ? 1_000_000_000 / UInt64(ratePerSecond) : 0
    }

    /// The next request number, or nil once the total is handed out or the time is up.
    func take() async -> Int? {
        let index = next.add(1, ordering: .relaxed).oldValue
        guard index < total else { return nil }
        if intervalNanoseconds > 0 {
            let due = startNanoseconds + UInt64(index) * intervalNanoseconds
            let now = ProcessClock.nowNanoseconds()
            if due > now {
                try? await Task.sleep(for: .nanoseconds(Int64(due - now)))
            }
        }
        guard ProcessClock.nowNanoseconds() < deadlineNanoseconds else { return nil }
        return index
    }
}

/// Runs `--clients` tasks, each with its own worker, until the dispenser runs dry, and returns one
/// report per request class.
func runLoad<Worker: LoadWorker>(
    operation: String,
    classes: [String],
    options: GlobalOptions,
    connections: Connections,
    total: Int? = nil,
    ratePerSecond: Int = 0,
    makeWorker: @escaping @Sendable (_ clientIndex: Int) -> Worker
) async -> [Report] {
    let requestTotal = total ?? options.total
    let progress = Progress(total: requestTotal)
    let meter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
    let start = ProcessClock.nowNanoseconds()
    let dispenser = RequestDispenser(
        total: requestTotal,
        ratePerSecond: ratePerSecond,
        durationSeconds: options.duration
    )
    // The progress task answers nil; each client answers its recorders.
    let (recorders, end) = await withTaskGroup(of: [LatencyRecorder]?.self) { group in
        group.addTask {
            await progress.run()
            return nil
        }
        for clientIndex in 0..<options.clients {
            group.addTask(executorPreference: connections.executor) {
                var worker = makeWorker(clientIndex)
                var recorders = [LatencyRecorder](repeating: LatencyRecorder(), count: classes.count)
                while let index = await dispenser.take() {
                    let requestClass = worker.prepare(index)
                    let sent = ProcessClock.nowNanoseconds()
                    do {
                        try await worker.send()
                        recorders[requestClass].record(nanoseconds: ProcessClock.nowNanoseconds() - sent)
                    } catch {
                        recorders[requestClass].recordError(describe(error))
                    }
                    progress.increment()
                }
                return recorders
            }
        }
        var merged = [LatencyRecorder](repeating: LatencyRecorder(), count: classes.count)
        var clientsDone = 0
        // Taken when the last client finishes, not when the progress line notices.
        var end = start
        while let result = await group.next() {
            guard let clientRecorders = result else { continue }
            for (index, recorder) in clientRecorders.enumerated() {
                merged[index].merge(recorder)
            }
            clientsDone += 1
            if clientsDone == options.clients {
                end = ProcessClock.nowNanoseconds()
                progress.finish()
            }
        }
        return (merged, end)
    }
    let elapsedSeconds = Double(end - start) / 1e9
    let cost = meter.read()
    return zip(classes, recorders).map { name, recorder in
        Report(
            operation: classes.count == 1 ? operation : "\(operation)-\(name)",
            latencies: recorder,
            elapsedSeconds: elapsedSeconds,
            client: cost
        )
    }
}

/// The message a failed request is counted under: gRPC's code and text, as etcd's client shows.
func describe(_ error: any Error) -> String {
    if let rpcError = error as? RPCError {
        return "rpc error: code = \(rpcError.code) desc = \(rpcError.message)"
    }
    return String(describing: error)
}
