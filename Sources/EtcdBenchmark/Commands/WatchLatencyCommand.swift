import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore
import Synchronization

/// `watch-latency`: `--clients` watchers on one key, spread over the connections; puts to that key
/// at `--put-rate` from a connection of their own; reports the time from each put's start to each
/// watcher receiving its event.
///
/// etcd's benchmark starts its clock when the put returns and waits for every watcher before the
/// next put; here each put carries its start time in its value, so the figure is the full
/// put→event latency and puts keep their rate however slow the watchers are.
struct WatchLatencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-latency",
        abstract: "Benchmark watch latency (put start to event received, per watcher)."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Number of keys to put per second.")
    var putRate: Int = 100

    @Option(help: "Key size of watch response.")
    var keySize: Int = 32

    @Option(help: "Value size of watch response (at least 8: it carries the put's start time).")
    var valSize: Int = 32

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var drainTimeout: Double = 10

    func validate() throws {
        guard valSize >= PutStamp.length else { throw ValidationError("--val-size must be at least 8") }
        guard keySize >= 1, putRate >= 1 else { throw ValidationError("--key-size and --put-rate must be positive") }
    }

    func run() async throws {
        let key = randomBytes(keySize, seed: 0xC0FFEE)
        let watchers = global.clients
        let states = (0..<watchers).map { _ in WatchStreamState() }
        let outcome = try await Connections.with(global, extraConnections: 1) { connections in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, state) in states.enumerated() {
                    group.addTask {
                        await runWatchStream(
                            client: Etcdserverpb_Watch.Client(wrapping: connections.client(for: index)),
                            metadata: connections.metadata,
                            keys: [key],
                            valueCarriesStart: true,
                            state: state
                        )
                    }
                }
                try await waitForWatchers(states, perStream: 1, timeoutSeconds: 30)
                let meter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
                let start = ProcessClock.nowNanoseconds()
                let putFailures = try await putStamped(key: key, connections: connections)
                let expected = (global.total - putFailures) * watchers
                let events = { states.reduce(0) { $0 + $1.events.load(ordering: .relaxed) } }
                _ = try? await waitUntil(timeoutSeconds: drainTimeout) { events() >= expected }
                let end = states.map { $0.lastEventNanoseconds.load(ordering: .relaxed) }.max() ?? start
                group.cancelAll()
                return (meter.read(), Double(max(end, start) - start) / 1e9, putFailures, expected, events())
            }
        }
        var latencies = LatencyRecorder()
        for state in states {
            latencies.merge(state.eventLatency.withLock { $0[0] })
            if let failure = state.failure.withLock({ $0 }) { latencies.recordError(failure) }
        }
        let (cost, elapsed, putFailures, expected, received) = outcome
        let report = Report(operation: "watch-latency", latencies: latencies, elapsedSeconds: elapsed, client: cost)
        emit(
            [(heading: nil, report: report)],
            options: global,
            extra: ["watchers": watchers, "events_expected": expected, "events_received": received,
                    "put_failures": putFailures]
        )
    }

    /// `--total` paced puts to `key`, each value stamped with its start time; returns the failures.
    private func putStamped(key: [UInt8], connections: Connections) async throws -> Int {
        let kv = Etcdserverpb_KV.Client(wrapping: connections.extraClients[0])
        var value = randomBytes(valSize, seed: 0x5EED)
        var message = Etcdserverpb_PutRequest()
        message.key = Data(key)
        let interval = UInt64(1_000_000_000 / putRate)
        let start = ProcessClock.nowNanoseconds()
        var failures = 0
        for index in 0..<global.total {
            let due = start + UInt64(index) * interval
            let now = ProcessClock.nowNanoseconds()
            if due > now { try await Task.sleep(for: .nanoseconds(Int64(due - now))) }
            PutStamp.write(ProcessClock.nowNanoseconds(), into: &value)
            message.value = Data(value)
            do {
                _ = try await kv.put(message, metadata: connections.metadata)
            } catch {
                failures += 1
                note("put failed: \(describe(error))")
            }
        }
        return failures
    }
}

struct WaitTimedOut: Error, CustomStringConvertible {
    var description: String { "timed out waiting for the watchers" }
}

/// A watch stream failed before its watchers were created (e.g. UNIMPLEMENTED).
struct WatchStreamFailed: Error, CustomStringConvertible {
    var reason: String
    var description: String { "watch stream failed: \(reason)" }
}

/// Waits until every stream has `perStream` watchers created; fails fast if a stream fails.
func waitForWatchers(_ states: [WatchStreamState], perStream: Int, timeoutSeconds: Double) async throws {
    try await waitForWatchers(states, counts: states.map { _ in perStream }, timeoutSeconds: timeoutSeconds)
}

/// Waits until stream `i` has `counts[i]` watchers created; fails fast if a stream fails.
func waitForWatchers(_ states: [WatchStreamState], counts: [Int], timeoutSeconds: Double) async throws {
    precondition(states.count == counts.count, "\(states.count) streams but \(counts.count) watcher counts")
    try await waitUntil(timeoutSeconds: timeoutSeconds) {
        zip(states, counts).allSatisfy { $0.created.load(ordering: .relaxed) >= $1 }
            || states.contains { $0.failure.withLock { $0 } != nil }
    }
    if let reason = states.lazy.compactMap({ $0.failure.withLock { $0 } }).first {
        throw WatchStreamFailed(reason: reason)
    }
}

/// Polls `condition` every 5 ms until it holds, or throws after `timeoutSeconds`.
func waitUntil(timeoutSeconds: Double, _ condition: () -> Bool) async throws {
    let deadline = ProcessClock.nowNanoseconds() + UInt64(timeoutSeconds * 1e9)
    while !condition() {
        guard ProcessClock.nowNanoseconds() < deadline else { throw WaitTimedOut() }
        try await Task.sleep(for: .milliseconds(5))
    }
}
