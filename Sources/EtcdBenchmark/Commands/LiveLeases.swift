import EtcdAPI
import Foundation
import GRPCCore
import Synchronization

/// The `--live-leases` mode of `lease-keepalive` (issue 7): a server holding many leases that
/// clients keep alive, as a fleet of clientv3 sessions does.
///
/// `--live-leases` leases (TTL `--ttl`) are granted first, `--clients` at a time, with IDs this
/// run chooses (`idBase + i`), so no ID has to travel back from the grant tasks. Then `--streams`
/// LeaseKeepAlive streams, spread over `--conns`, each own an equal share of the leases and renew
/// every one of them once per `--renew-interval` seconds (clientv3 renews at TTL/3), spread evenly
/// over the interval, for `--hold-seconds`. Every answer is timed from its request; an answer with
/// TTL 0 means the lease was lost and counts as an error.
///
/// Phase markers go to stderr (`MARK leases-granted`, `MARK keepalives-start`,
/// `MARK keepalives-end`) for scripts that sample the server between phases.
struct LiveLeasesPlan: Sendable {
    var leases: Int
    var streams: Int
    var ttl: Int64
    var renewIntervalSeconds: Double
    var holdSeconds: Double
    var idleSeconds: Double
    var drainTimeoutSeconds: Double
    /// The first lease's ID; lease `i` is `idBase + i`.
    var idBase: Int64

    /// How long a stream sleeps at least between two sends: each wake sends every keepalive due
    /// by then in one write. 20 ms keeps the tool's own cost low (one wake per stream, not per
    /// keepalive) while adding little to when a keepalive goes out.
    static let sendTickNanoseconds: UInt64 = 20_000_000

    /// An ID base unlikely to collide with an earlier run against the same server: milliseconds
    /// since 1970 (about 2^41) shifted past any lease count this tool would hold (2^20).
    static func idBaseFromWallClock() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000) << 20
    }

    /// The leases stream `stream` renews: every `streams`-th lease, starting at `stream`.
    func leaseIDs(onStream stream: Int) -> [Int64] {
        stride(from: stream, to: leases, by: streams).map { idBase + Int64($0) }
    }

    /// When keepalive number `sequence` of stream `stream` is due, in nanoseconds after the start
    /// of the phase. A stream's keepalives are evenly spaced, and the streams are offset from each
    /// other by a fraction of that spacing, so that the whole load arrives evenly.
    func dueNanoseconds(sequence: Int, stream: Int, leasesOnStream: Int) -> UInt64 {
        let interval = renewIntervalSeconds * 1e9
        let spacing = interval / Double(max(leasesOnStream, 1))
        return UInt64(Double(sequence) * spacing + spacing * Double(stream) / Double(streams))
    }
}

/// What one keepalive stream has sent and received; written by its two halves concurrently.
final class KeepAliveStreamState: Sendable {
    /// Send time of each lease's outstanding keepalive.
    let pending = Mutex<[Int64: UInt64]>([:])
    let latencies = Mutex(LatencyRecorder())
    let sent = Atomic<Int>(0)
    let answered = Atomic<Int>(0)
    /// Answers with TTL 0: the server no longer had the lease.
    let lost = Atomic<Int>(0)
    /// Why the stream ended early, if it did.
    let failure = Mutex<String?>(nil)

    var outstanding: Int { pending.withLock { $0.count } }
}

/// Grants a lease with a chosen ID per request number: `idBase + index`.
struct ChosenIDLeaseGrantWorker: LoadWorker {
    let lease: Etcdserverpb_Lease.Client<Connections.Transport>
    let metadata: Metadata
    private var request = Etcdserverpb_LeaseGrantRequest()
    private let idBase: Int64

    init(lease: Etcdserverpb_Lease.Client<Connections.Transport>, metadata: Metadata, ttl: Int64, idBase: Int64) {
        self.lease = lease
        self.metadata = metadata
        self.idBase = idBase
        request.ttl = ttl
    }

    mutating func prepare(_ index: Int) -> Int {
        request.id = idBase + Int64(index)
        return 0
    }

    func send() async throws {
        _ = try await lease.leaseGrant(request, metadata: metadata)
    }
}

/// Grants the plan's leases, holds them under keepalives, and reports both phases.
func runLiveLeases(plan: LiveLeasesPlan, options: GlobalOptions) async throws {
    var grantOptions = options
    grantOptions.duration = 0
    let states = (0..<plan.streams).map { _ in KeepAliveStreamState() }
    let outcome = try await Connections.with(options) { connections in
        let grants = await runLoad(
            operation: "lease-grant",
            classes: ["lease-grant"],
            options: grantOptions,
            connections: connections,
            total: plan.leases
        ) { clientIndex in
            ChosenIDLeaseGrantWorker(
                lease: Etcdserverpb_Lease.Client(wrapping: connections.client(for: clientIndex)),
                metadata: connections.metadata,
                ttl: plan.ttl,
                idBase: plan.idBase
            )
        }
        note("lease-keepalive: \(grants[0].successes) leases granted in \(String(format: "%.3f", grants[0].elapsedSeconds)) s")
        note("MARK leases-granted")
        if plan.idleSeconds > 0 {
            try await Task.sleep(for: .seconds(plan.idleSeconds))
        }
        note("MARK keepalives-start")
        let meter = CostMeter(counters: connections.counters, connectionCount: connections.connectionCount)
        let start = ProcessClock.nowNanoseconds()
        await withTaskGroup(of: Void.self) { group in
            for (stream, state) in states.enumerated() {
                group.addTask(executorPreference: connections.executor) {
                    await holdLeases(
                        Etcdserverpb_Lease.Client(wrapping: connections.client(for: stream)),
                        metadata: connections.metadata,
                        leaseIDs: plan.leaseIDs(onStream: stream),
                        stream: stream,
                        plan: plan,
                        startNanoseconds: start,
                        state: state
                    )
                }
            }
        }
        let elapsed = Double(ProcessClock.nowNanoseconds() - start) / 1e9
        note("MARK keepalives-end")
        return (grants[0], elapsed, meter.read())
    }
    let (grants, keepAliveSeconds, keepAliveCost) = outcome
    var latencies = LatencyRecorder()
    for state in states {
        latencies.merge(state.latencies.withLock { $0 })
        if let failure = state.failure.withLock({ $0 }) { latencies.recordError(failure) }
    }
    let total = { (count: (KeepAliveStreamState) -> Int) in states.reduce(0) { $0 + count($1) } }
    let answered = total { $0.answered.load(ordering: .relaxed) }
    emit(
        [
            (heading: "Lease grant summary:", report: grants),
            (
                heading: "Keepalive summary (request to answer; lost leases count as errors):",
                report: Report(
                    operation: "lease-keepalive",
                    latencies: latencies,
                    elapsedSeconds: keepAliveSeconds,
                    client: keepAliveCost
                )
            ),
        ],
        options: options,
        extra: [
            "live_leases": plan.leases,
            "leases_granted": grants.successes,
            "streams": plan.streams,
            "ttl_seconds": plan.ttl,
            "renew_interval_seconds": plan.renewIntervalSeconds,
            "hold_seconds": plan.holdSeconds,
            "keepalives_sent": total { $0.sent.load(ordering: .relaxed) },
            "keepalives_answered": answered,
            "keepalives_per_second": keepAliveSeconds > 0 ? Double(answered) / keepAliveSeconds : 0,
            "leases_lost": total { $0.lost.load(ordering: .relaxed) },
        ]
    )
}

/// One keepalive stream: sends each of its leases' keepalives when due until the hold is over,
/// waits (up to the drain timeout) for the outstanding answers, then closes its side, which ends
/// the server's.
private func holdLeases(
    _ lease: Etcdserverpb_Lease.Client<Connections.Transport>,
    metadata: Metadata,
    leaseIDs: [Int64],
    stream: Int,
    plan: LiveLeasesPlan,
    startNanoseconds: UInt64,
    state: KeepAliveStreamState
) async {
    guard !leaseIDs.isEmpty else { return }
    let holdEnd = startNanoseconds + UInt64(plan.holdSeconds * 1e9)
    let due = { @Sendable (sequence: Int) in
        startNanoseconds + plan.dueNanoseconds(sequence: sequence, stream: stream, leasesOnStream: leaseIDs.count)
    }
    do {
        try await lease.leaseKeepAlive(
            metadata: metadata,
            requestProducer: { writer in
                var sequence = 0
                var batch: [Etcdserverpb_LeaseKeepAliveRequest] = []
                while true {
                    // Everything due by now goes out in one write (one flush), as clientv3's
                    // keepalive loop sends whatever is due each time it wakes.
                    let now = ProcessClock.nowNanoseconds()
                    while due(sequence) <= now && due(sequence) < holdEnd {
                        var request = Etcdserverpb_LeaseKeepAliveRequest()
                        request.id = leaseIDs[sequence % leaseIDs.count]
                        batch.append(request)
                        sequence += 1
                    }
                    if !batch.isEmpty {
                        // A lease whose previous keepalive is still unanswered keeps its older
                        // send time: the first answer is timed against the first request.
                        state.pending.withLock { pending in
                            for request in batch where pending[request.id] == nil { pending[request.id] = now }
                        }
                        try await writer.write(contentsOf: batch)
                        state.sent.add(batch.count, ordering: .relaxed)
                        batch.removeAll(keepingCapacity: true)
                    }
                    let next = due(sequence)
                    guard next < holdEnd else { break }
                    let sentAt = ProcessClock.nowNanoseconds()
                    let wake = max(next, sentAt + LiveLeasesPlan.sendTickNanoseconds)
                    try await Task.sleep(for: .nanoseconds(Int64(wake - sentAt)))
                }
                _ = try? await waitUntil(timeoutSeconds: plan.drainTimeoutSeconds) { state.outstanding == 0 }
            },
            onResponse: { response in
                for try await answer in response.messages {
                    let received = ProcessClock.nowNanoseconds()
                    let sent = state.pending.withLock { $0.removeValue(forKey: answer.id) }
                    state.answered.add(1, ordering: .relaxed)
                    if answer.ttl <= 0 {
                        state.lost.add(1, ordering: .relaxed)
                        state.latencies.withLock { $0.recordError(LeaseNotFound().description) }
                    } else if let sent {
                        state.latencies.withLock { $0.record(nanoseconds: received - sent) }
                    }
                }
            }
        )
    } catch {
        state.failure.withLock { $0 = $0 ?? "keepalive stream \(stream) failed: \(describe(error))" }
    }
    let unanswered = state.outstanding
    if unanswered > 0 {
        state.failure.withLock { $0 = $0 ?? "keepalive stream \(stream): \(unanswered) keepalives unanswered" }
    }
}
