import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore
import Synchronization

/// `watch-mixed` (issue 6): many quiet watchers and one hot prefix under one steady write load.
///
/// `--distinct-watchers` watchers, each on a key of its own, spread over `--streams` streams, plus
/// `--hot-watchers` watchers of one prefix (spread over the same streams, or on `--hot-streams` of
/// their own). Once every watcher is created (and after `--idle-seconds`, so that a script can read
/// the server's memory with the watchers idle), `--put-total` puts at `--put-rate` from a
/// connection and event loop thread of their own, up to `--clients` in flight, alternate between
/// the distinct keys and the hot prefix (see `WatchMixedPlan`). Every value carries its put's start time, so each received event
/// gives one put→event latency. Reports watcher creation, the puts, the events/s from the first put
/// to the last event, and event latency overall and per kind of watcher.
///
/// Phase markers go to stderr (`MARK watchers-created`, `MARK puts-start`, `MARK puts-end`,
/// `MARK events-drained`) for scripts that sample the server between phases.
struct WatchMixedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-mixed",
        abstract: "Benchmark many single-key watchers plus a hot watched prefix under a steady put rate."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Key prefix for the workload: distinct keys are <prefix>/d/<i>, hot keys <prefix>/h/<j>.")
    var prefix: String = "watch-mixed"

    @Option(help: "Watchers on distinct keys, one key each.")
    var distinctWatchers: Int = 10_000

    @Option(help: "Watch streams carrying the distinct-key watchers (spread over --conns).")
    var streams: Int = 100

    @Option(help: "Watchers on the hot prefix.")
    var hotWatchers: Int = 100

    @Option(help: "Streams of their own for the hot watchers (0: spread them over the --streams streams).")
    var hotStreams: Int = 0

    @Option(help: "Number of different keys the hot-prefix puts cycle through.")
    var hotKeys: Int = 100

    @Option(help: "Number of put requests (even ones to distinct keys, odd ones under the hot prefix).")
    var putTotal: Int = 20_000

    @Option(help: "Puts per second (0 is no limit).")
    var putRate: Int = 1_000

    @Option(help: "Value size (at least 8: it carries the put's start time).")
    var valSize: Int = 32

    @Option(help: "Seconds to hold the watchers idle between their creation and the first put.")
    var idleSeconds: Double = 0

    @Option(help: "Seconds to wait for every watcher to be created.")
    var createTimeout: Double = 120

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var drainTimeout: Double = 10

    /// For showing why the puts get a thread of their own: without it, put responses wait behind
    /// the watch events in the tool's shared event loops and task pool.
    @Flag(help: .hidden)
    var putsShareThreads = false

    func validate() throws {
        guard distinctWatchers >= 0, hotWatchers >= 0, distinctWatchers + hotWatchers >= 1 else {
            throw ValidationError("--distinct-watchers and --hot-watchers must not be negative, and not both 0")
        }
        guard streams >= 1, hotStreams >= 0, hotKeys >= 1 else {
            throw ValidationError("--streams and --hot-keys must be positive, --hot-streams not negative")
        }
        guard putTotal >= 0, putRate >= 0 else {
            throw ValidationError("--put-total and --put-rate must not be negative")
        }
        guard valSize >= PutStamp.length else { throw ValidationError("--val-size must be at least 8") }
        guard idleSeconds >= 0, createTimeout > 0, drainTimeout >= 0 else {
            throw ValidationError("--idle-seconds, --create-timeout and --drain-timeout must not be negative")
        }
    }

    var plan: WatchMixedPlan {
        WatchMixedPlan(
            prefix: prefix,
            distinctWatchers: distinctWatchers,
            distinctStreams: streams,
            hotWatchers: hotWatchers,
            hotStreams: hotStreams,
            hotKeys: hotKeys
        )
    }

    func run() async throws {
        let plan = self.plan
        let targets = (0..<plan.streamCount).map { plan.targets(onStream: $0) }
        let states = targets.map { _ in WatchStreamState(eventClasses: WatchMixedPlan.EventClass.allCases.count) }
        let classify: EventClassifier = { plan.eventClass(ofKey: $0).rawValue }
        let outcome = try await Connections.with(
            global,
            extraConnections: 1,
            extraConnectionsOnOwnThread: !putsShareThreads
        ) { connections in
            try await withThrowingTaskGroup(of: Void.self) { group in
                let creationMeter = CostMeter(
                    counters: connections.counters,
                    connectionCount: connections.connectionCount
                )
                let creationStart = ProcessClock.nowNanoseconds()
                for (stream, state) in states.enumerated() {
                    let creates = targets[stream].map(WatchMixedPlan.createRequest(for:))
                    group.addTask(executorPreference: connections.executor) {
                        await runWatchStream(
                            client: Etcdserverpb_Watch.Client(wrapping: connections.client(for: stream)),
                            metadata: connections.metadata,
                            creates: creates,
                            eventClass: classify,
                            state: state
                        )
                    }
                }
                try await waitForWatchers(states, counts: targets.map(\.count), timeoutSeconds: createTimeout)
                let creationElapsed = Double(ProcessClock.nowNanoseconds() - creationStart) / 1e9
                let creationCost = creationMeter.read()
                note(
                    "watch-mixed: \(plan.watcherCount) watchers created in \(String(format: "%.3f", creationElapsed)) s"
                )
                // The put connection is opened on its first call: make that call now, so that the
                // first puts do not pay for the TCP and HTTP/2 handshakes.
                try await warmUp(
                    Etcdserverpb_KV.Client(wrapping: connections.extraClients[0]),
                    plan: plan,
                    metadata: connections.metadata
                )
                note("MARK watchers-created")
                if idleSeconds > 0 {
                    try await Task.sleep(for: .seconds(idleSeconds))
                }
                let phase = await putsAndEvents(plan: plan, states: states, connections: connections)
                group.cancelAll()
                return MixedOutcome(creationSeconds: creationElapsed, creationCost: creationCost, phase: phase)
            }
        }
        emit(
            report(outcome, plan: plan, states: states),
            options: global,
            extra: extra(outcome, plan: plan, states: states)
        )
    }

    /// Runs the puts, waits for their events (up to `--drain-timeout`), and measures both.
    private func putsAndEvents(
        plan: WatchMixedPlan,
        states: [WatchStreamState],
        connections: Connections
    ) async -> EventPhase {
        var putOptions = global
        putOptions.total = putTotal
        note("MARK puts-start")
        let meter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
        let putStart = ProcessClock.nowNanoseconds()
        let value = randomBytes(valSize, seed: 0x5EED)
        // The put tasks run on the put connection's own thread (see Connections.with).
        var putConnections = connections
        putConnections.executor = connections.extraExecutor ?? connections.executor
        let putReports = await runLoad(
            operation: "watch-mixed-put",
            classes: WatchMixedPlan.EventClass.allCases.map { "\($0)" },
            options: putOptions,
            connections: putConnections,
            ratePerSecond: putRate
        ) { _ in
            MixedPutWorker(
                kv: Etcdserverpb_KV.Client(wrapping: connections.extraClients[0]),
                metadata: connections.metadata,
                plan: plan,
                value: value
            )
        }
        note("MARK puts-end")
        let expected = plan.expectedEvents(
            distinctPuts: putReports[WatchMixedPlan.EventClass.distinct.rawValue].successes,
            hotPuts: putReports[WatchMixedPlan.EventClass.hot.rawValue].successes
        )
        let events = { states.reduce(0) { $0 + $1.events.load(ordering: .relaxed) } }
        _ = try? await waitUntil(timeoutSeconds: drainTimeout) { events() >= expected.distinct + expected.hot }
        note("MARK events-drained")
        let lastEvent = states.map { $0.lastEventNanoseconds.load(ordering: .relaxed) }.max() ?? putStart
        return EventPhase(
            putReports: putReports,
            expected: expected,
            received: events(),
            eventsSeconds: Double(max(lastEvent, putStart) - putStart) / 1e9,
            eventsCost: meter.read()
        )
    }

    /// One serializable read of a watched key, which changes nothing the watchers could see.
    private func warmUp(
        _ kv: Etcdserverpb_KV.Client<Connections.Transport>,
        plan: WatchMixedPlan,
        metadata: Metadata
    ) async throws {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data(plan.put(0).key)
        range.serializable = true
        _ = try await kv.range(range, metadata: metadata)
    }

    /// What the run measured, handed out of the connections' scope.
    struct MixedOutcome: Sendable {
        var creationSeconds: Double
        var creationCost: ClientCost
        var phase: EventPhase
    }

    /// What the puts and their events measured, from the first put to the end of the drain.
    struct EventPhase: Sendable {
        var putReports: [Report]
        var expected: (distinct: Int, hot: Int)
        var received: Int
        var eventsSeconds: Double
        var eventsCost: ClientCost
    }

    private func report(
        _ outcome: MixedOutcome,
        plan: WatchMixedPlan,
        states: [WatchStreamState]
    ) -> [(heading: String?, report: Report)] {
        var creation = LatencyRecorder()
        var perClass = [LatencyRecorder](repeating: LatencyRecorder(), count: WatchMixedPlan.EventClass.allCases.count)
        var allEvents = LatencyRecorder()
        for state in states {
            creation.merge(state.creation.withLock { $0 })
            for (index, recorder) in state.eventLatency.withLock({ $0 }).enumerated() {
                perClass[index].merge(recorder)
                allEvents.merge(recorder)
            }
            // A stream that ended during the puts lost events; say why next to the event figures.
            if let failure = state.failure.withLock({ $0 }) { allEvents.recordError(failure) }
        }
        var puts = LatencyRecorder()
        for report in outcome.phase.putReports { puts.merge(report.latencies) }
        let putElapsed = outcome.phase.putReports.first?.elapsedSeconds ?? 0
        let putCost = outcome.phase.putReports.first?.client ?? ClientCost()
        func events(_ operation: String, _ latencies: LatencyRecorder) -> Report {
            Report(
                operation: operation,
                latencies: latencies,
                elapsedSeconds: outcome.phase.eventsSeconds,
                client: outcome.phase.eventsCost
            )
        }
        return [
            (
                "Watch creation summary:",
                Report(
                    operation: "watch-create",
                    latencies: creation,
                    elapsedSeconds: outcome.creationSeconds,
                    client: outcome.creationCost
                )
            ),
            (
                "Put summary:",
                Report(operation: "watch-mixed-put", latencies: puts, elapsedSeconds: putElapsed, client: putCost)
            ),
            (
                "Event summary, all events (put start to event received; Requests/sec is events/s):",
                events("watch-event", allEvents)
            ),
            (
                "Event summary, distinct-key watchers:",
                events("watch-event-distinct", perClass[WatchMixedPlan.EventClass.distinct.rawValue])
            ),
            (
                "Event summary, hot-prefix watchers:",
                events("watch-event-hot", perClass[WatchMixedPlan.EventClass.hot.rawValue])
            ),
        ]
    }

    private func extra(_ outcome: MixedOutcome, plan: WatchMixedPlan, states: [WatchStreamState]) -> [String: Any] {
        let receivedByClass = WatchMixedPlan.EventClass.allCases.map { eventClass in
            states.reduce(0) { $0 + $1.eventLatency.withLock { $0[eventClass.rawValue].count } }
        }
        let distinct = WatchMixedPlan.EventClass.distinct.rawValue
        let hot = WatchMixedPlan.EventClass.hot.rawValue
        return [
            "watchers_distinct": plan.distinctWatchers,
            "watchers_hot": plan.hotWatchers,
            "streams": plan.streamCount,
            "watchers_canceled": states.reduce(0) { $0 + $1.canceled.load(ordering: .relaxed) },
            "creation_seconds": outcome.creationSeconds,
            "puts_ok_distinct": outcome.phase.putReports[distinct].successes,
            "puts_ok_hot": outcome.phase.putReports[hot].successes,
            "events_expected": outcome.phase.expected.distinct + outcome.phase.expected.hot,
            "events_expected_distinct": outcome.phase.expected.distinct,
            "events_expected_hot": outcome.phase.expected.hot,
            "events_received": outcome.phase.received,
            "events_received_distinct": receivedByClass[distinct],
            "events_received_hot": receivedByClass[hot],
            "events_elapsed_seconds": outcome.phase.eventsSeconds,
            "events_per_second": outcome.phase.eventsSeconds > 0
                ? Double(outcome.phase.received) / outcome.phase.eventsSeconds : 0,
            "events_client_cpu_seconds": outcome.phase.eventsCost.cpuSeconds,
            "idle_seconds": idleSeconds,
        ]
    }
}

/// One client's puts for watch-mixed: the key comes from the plan, the value's first 8 bytes are
/// stamped with the time just before the request goes out.
struct MixedPutWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    let metadata: Metadata
    let plan: WatchMixedPlan
    private var value: [UInt8]
    private var message = Etcdserverpb_PutRequest()

    init(kv: Etcdserverpb_KV.Client<Connections.Transport>, metadata: Metadata, plan: WatchMixedPlan, value: [UInt8]) {
        precondition(value.count >= PutStamp.length, "value of \(value.count) bytes cannot carry a put stamp")
        self.kv = kv
        self.metadata = metadata
        self.plan = plan
        self.value = value
    }

    mutating func prepare(_ index: Int) -> Int {
        let put = plan.put(index)
        message.key = Data(put.key)
        return put.eventClass.rawValue
    }

    mutating func send() async throws {
        PutStamp.write(ProcessClock.nowNanoseconds(), into: &value)
        message.value = Data(value)
        _ = try await kv.put(message, metadata: metadata)
    }
}
