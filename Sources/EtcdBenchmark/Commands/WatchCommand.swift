import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore
import Synchronization

/// `watch`: `--streams` Watch streams with `--watch-per-stream` watchers each, over
/// `--watched-key-total` keys; first reports how long watcher creation took, then puts
/// `--put-total` times to the watched keys (round robin, `--clients` in flight, at `--put-rate`)
/// and reports the puts and the events/s delivered to all watchers, as etcd's benchmark does.
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Benchmark watch.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Total number of watch streams.")
    var streams: Int = 10

    @Option(help: "Total number of watchers per stream.")
    var watchPerStream: Int = 100

    @Option(help: "Total number of keys to be watched.")
    var watchedKeyTotal: Int = 1

    @Option(help: "Number of put requests.")
    var putTotal: Int = 1000

    @Option(help: "Number of keys to put per second (0 is no limit).")
    var putRate: Int = 0

    @Option(help: "Key size of watch request.")
    var keySize: Int = 32

    @Option(help: "Value size of watch request.")
    var valSize: Int = 32

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var drainTimeout: Double = 10

    func validate() throws {
        guard streams >= 1, watchPerStream >= 1, watchedKeyTotal >= 1, keySize >= 1 else {
            throw ValidationError("--streams, --watch-per-stream, --watched-key-total and --key-size must be positive")
        }
        guard putTotal >= 0, putRate >= 0 else { throw ValidationError("--put-total and --put-rate must not be negative") }
    }

    func run() async throws {
        let keys = (0..<watchedKeyTotal).map { randomBytes(keySize, seed: 0xC0FFEE &+ UInt64($0)) }
        let states = (0..<streams).map { _ in WatchStreamState() }
        let watchers = streams * watchPerStream
        // Watcher w watches key w % watchedKeyTotal; put i writes key i % watchedKeyTotal.
        let watchersPerKey = (0..<watchedKeyTotal).map { key in
            (0..<watchers).filter { $0 % watchedKeyTotal == key }.count
        }
        let expected = (0..<putTotal).reduce(0) { $0 + watchersPerKey[$1 % watchedKeyTotal] }
        var putOptions = global
        putOptions.total = putTotal
        let outcome = try await Connections.with(global) { connections in
            try await withThrowingTaskGroup(of: Void.self) { group in
                let creationMeter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
                let creationStart = ProcessClock.nowNanoseconds()
                for (stream, state) in states.enumerated() {
                    let streamKeys = (0..<watchPerStream).map { keys[(stream * watchPerStream + $0) % watchedKeyTotal] }
                    group.addTask {
                        await runWatchStream(
                            client: Etcdserverpb_Watch.Client(wrapping: connections.client(for: stream)),
                            metadata: connections.metadata,
                            keys: streamKeys,
                            valueCarriesStart: false,
                            state: state
                        )
                    }
                }
                try await waitForWatchers(states, perStream: watchPerStream, timeoutSeconds: 60)
                let creationElapsed = Double(ProcessClock.nowNanoseconds() - creationStart) / 1e9
                let creationCost = creationMeter.read()
                let eventsMeter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
                let putStart = ProcessClock.nowNanoseconds()
                let value = Data(randomBytes(valSize, seed: 0x5EED))
                let putReports = await runLoad(
                    operation: "watch-put",
                    classes: ["put"],
                    options: putOptions,
                    connections: connections,
                    ratePerSecond: putRate
                ) { clientIndex in
                    WatchedKeyPutWorker(
                        kv: Etcdserverpb_KV.Client(wrapping: connections.client(for: clientIndex)),
                        metadata: connections.metadata,
                        keys: keys,
                        value: value
                    )
                }
                let events = { states.reduce(0) { $0 + $1.events.load(ordering: .relaxed) } }
                _ = try? await waitUntil(timeoutSeconds: drainTimeout) { events() >= expected }
                let lastEvent = states.map { $0.lastEventNanoseconds.load(ordering: .relaxed) }.max() ?? putStart
                group.cancelAll()
                return (
                    creationElapsed, creationCost, putReports,
                    Double(max(lastEvent, putStart) - putStart) / 1e9, eventsMeter.read(), events()
                )
            }
        }
        let (creationElapsed, creationCost, putReports, eventsElapsed, eventsCost, received) = outcome
        var creation = LatencyRecorder()
        for state in states {
            creation.merge(state.creation.withLock { $0 })
            if let failure = state.failure.withLock({ $0 }) { creation.recordError(failure) }
        }
        let creationReport = Report(
            operation: "watch-create",
            latencies: creation,
            elapsedSeconds: creationElapsed,
            client: creationCost
        )
        let eventsPerSecond = eventsElapsed > 0 ? Double(received) / eventsElapsed : 0
        var reports: [(heading: String?, report: Report)] = [(heading: "Watch creation summary:", report: creationReport)]
        reports += putReports.map { (heading: "Put summary:", report: $0) }
        emit(
            reports,
            options: global,
            extra: [
                "watchers": watchers, "events_expected": expected, "events_received": received,
                "events_elapsed_seconds": eventsElapsed, "events_per_second": eventsPerSecond,
                "events_client_cpu_seconds": eventsCost.cpuSeconds,
            ]
        )
    }
}

/// One client's puts to the watched keys, round robin by request number.
struct WatchedKeyPutWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    private var requests: [ClientRequest<Etcdserverpb_PutRequest>]
    private var next = 0

    init(kv: Etcdserverpb_KV.Client<Connections.Transport>, metadata: Metadata, keys: [[UInt8]], value: Data) {
        self.kv = kv
        requests = keys.map { key in
            var message = Etcdserverpb_PutRequest()
            message.key = Data(key)
            message.value = value
            return ClientRequest(message: message, metadata: metadata)
        }
    }

    mutating func prepare(_ index: Int) -> Int {
        next = index % requests.count
        return 0
    }

    func send() async throws {
        _ = try await kv.put(request: requests[next])
    }
}
