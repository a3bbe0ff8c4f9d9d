import CoreMetrics
import EtcdAPI
import EtcdRaft
import Prometheus
import Synchronization

/// etcd's Prometheus metrics for one member, under the names etcd's Grafana dashboards query.
///
/// Each member has a registry of its own, so that members run together in one process (tests)
/// keep theirs apart and nothing depends on a process-wide `MetricsSystem.bootstrap`.
///
/// Events are counted where they happen, with swift-prometheus's atomic counters (no lock per
/// request). Values the member already keeps (leader, Raft indexes, sizes, failed proposals) are
/// read only when `/metrics` is scraped, so serving requests pays nothing for them.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// For instruments handed to layers that know only swift-metrics' API (the WAL).
    let factory: PrometheusMetricsFactory
    /// Duration of each WAL fdatasync after an append.
    let walFsyncDurations: CoreMetrics.Timer
    /// Duration of each backend commit (with its checkpoint).
    let backendCommitDurations: CoreMetrics.Timer
    /// Bytes of gRPC messages received from and sent to clients.
    let clientReceivedBytes: Prometheus.Counter
    let clientSentBytes: Prometheus.Counter
    /// go-grpc-prometheus's per-method counters, for every method the server serves.
    let grpc: GRPCServerMetrics
    let healthSuccesses: Prometheus.Counter
    let healthFailures: Prometheus.Counter

    private let hasLeader: Prometheus.Gauge
    private let isLeader: Prometheus.Gauge
    private let isLearner: Prometheus.Gauge
    private let leaderChanges: Prometheus.Gauge
    private let proposalsCommitted: Prometheus.Gauge
    private let proposalsApplied: Prometheus.Gauge
    private let proposalsPending: Prometheus.Gauge
    private let proposalsFailed: Prometheus.Gauge
    private let databaseSize: Prometheus.Gauge
    private let databaseSizeDebugging: Prometheus.Gauge
    private let databaseSizeInUse: Prometheus.Gauge
    private let keys: Prometheus.Gauge
    private let currentRevision: Prometheus.Gauge
    private let compactRevision: Prometheus.Gauge
    private let quotaBackendBytes: Prometheus.Gauge
    private let process: ProcessMetrics
    private let sources = Mutex<MetricsSources?>(nil)
    /// The peer byte totals already added to the per-peer counters (the transport keeps totals;
    /// the counters get what grew since the last scrape).
    private let peerBytesCounted = Mutex<(sent: [UInt64: Int], received: [UInt64: Int])>(([:], [:]))

    /// etcd's disk latency buckets: 1 ms doubling to 8.192 s (`ExponentialBuckets(0.001, 2, 14)`).
    static let diskDurationBuckets: [Duration] = (0..<14).map { .microseconds(1_000 << $0) }

    init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "etcd_disk_wal_fsync_duration_seconds": Self.diskDurationBuckets,
            "etcd_disk_backend_commit_duration_seconds": Self.diskDurationBuckets,
        ]
        self.registry = registry
        self.factory = factory
        walFsyncDurations = CoreMetrics.Timer(label: "etcd_disk_wal_fsync_duration_seconds", factory: factory)
        backendCommitDurations = CoreMetrics.Timer(label: "etcd_disk_backend_commit_duration_seconds", factory: factory)
        clientReceivedBytes = registry.makeCounter(descriptor: .etcd("etcd_network_client_grpc_received_bytes_total", "The total number of bytes received from grpc clients."))
        clientSentBytes = registry.makeCounter(descriptor: .etcd("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients."))
        grpc = GRPCServerMetrics(registry: registry)
        healthSuccesses = registry.makeCounter(descriptor: .etcd("etcd_server_health_success", "The total number of successful health checks"))
        healthFailures = registry.makeCounter(descriptor: .etcd("etcd_server_health_failures", "The total number of failed health checks"))
        func gauge(_ name: String, _ help: String) -> Prometheus.Gauge { registry.makeGauge(descriptor: .etcd(name, help)) }
        hasLeader = gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")
        isLeader = gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")
        isLearner = gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")
        // Counters in etcd, but mirrored here from a count the member keeps: a gauge set to the
        // count reads the same to Prometheus (rate() and increase() work on it alike).
        leaderChanges = gauge("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")
        proposalsFailed = gauge("etcd_server_proposals_failed_total", "The total number of failed proposals seen.")
        proposalsCommitted = gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")
        proposalsApplied = gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")
        proposalsPending = gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.")
        databaseSize = gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")
        databaseSizeDebugging = gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")
        databaseSizeInUse = gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")
        keys = gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.")
        currentRevision = gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.")
        compactRevision = gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")
        quotaBackendBytes = gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")
        process = ProcessMetrics(registry: registry)
        registry.makeGauge(descriptor: .etcd("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version."), labels: [("server_version", EtcdVersion.server)]).set(1.0)
        registry.makeGauge(descriptor: .etcd("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version"), labels: [("cluster_version", Self.majorMinor(EtcdVersion.cluster))]).set(1.0)
    }

    /// Where the values read at scrape time come from, once the member runs.
    func attach(_ sources: MetricsSources) {
        registry.makeGauge(descriptor: .etcd("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."), labels: [("server_id", String(sources.memberID, radix: 16))]).set(1.0)
        quotaBackendBytes.set(Double(sources.quotaBackendBytes))
        self.sources.withLock { $0 = sources }
    }

    /// The Prometheus text exposition of every metric, with the state-mirroring ones refreshed.
    func exposition() -> [UInt8] {
        if let sources = sources.withLock({ $0 }) { refresh(from: sources) }
        process.refresh()
        return registry.emitToBuffer()
    }

    private func refresh(from sources: MetricsSources) {
        let status = sources.status
        let leader = status.leader
        hasLeader.set(leader != 0 ? 1.0 : 0.0)
        isLeader.set(leader != 0 && leader == sources.memberID ? 1.0 : 0.0)
        isLearner.set(status.isLearner ? 1.0 : 0.0)
        leaderChanges.set(Double(status.leaderChanges))
        proposalsCommitted.set(Double(status.committedIndex))
        proposalsApplied.set(Double(status.appliedIndex))
        proposalsPending.set(Double(sources.pending.waitingWrites))
        proposalsFailed.set(Double(sources.pending.failedWrites))
        databaseSize.set(Double(status.databaseSize))
        databaseSizeDebugging.set(Double(status.databaseSize))
        if let peers = sources.peerStatistics() { countPeerBytes(peers) }
        if let store = sources.storeFigures() {
            databaseSizeInUse.set(Double(store.sizeInUseBytes))
            keys.set(Double(store.keys))
            currentRevision.set(Double(store.currentRevision))
            compactRevision.set(Double(store.compactRevision))
        }
    }

    /// etcd's `etcd_network_peer_sent_bytes_total{To}` and `..._received_bytes_total{From}`, with
    /// peers named by their hexadecimal IDs as etcd names them.
    private func countPeerBytes(_ peers: PeerTransportStatistics) {
        let registry = self.registry
        peerBytesCounted.withLock { counted in
            for (peer, total) in peers.sentBytes {
                let grown = total - counted.sent[peer.rawValue, default: 0]
                guard grown > 0 else { continue }
                registry.makeCounter(
                    descriptor: .etcd("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers."),
                    labels: [("To", String(peer.rawValue, radix: 16))]
                ).increment(by: Int64(grown))
                counted.sent[peer.rawValue] = total
            }
            for (peer, total) in peers.receivedBytes {
                let grown = total - counted.received[peer.rawValue, default: 0]
                guard grown > 0 else { continue }
                registry.makeCounter(
                    descriptor: .etcd("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers."),
                    labels: [("From", String(peer.rawValue, radix: 16))]
                ).increment(by: Int64(grown))
                counted.received[peer.rawValue] = total
            }
        }
    }

    /// "3.5.0" becomes "3.5", as etcd labels its cluster version.
    static func majorMinor(_ version: String) -> String {
        version.split(separator: ".").prefix(2).joined(separator: ".")
    }
}

/// What the scrape-time metrics read: the member's status board and request queue, and figures
/// of its store (read under the replica's lock, once per scrape).
struct MetricsSources: Sendable {
    struct StoreFigures: Sendable {
        var sizeInUseBytes: Int64
        var keys: Int
        var currentRevision: Int64
        var compactRevision: Int64
    }

    var memberID: UInt64
    var status: MemberStatusBoard
    var pending: PendingRequests
    var quotaBackendBytes: Int64
    var storeFigures: @Sendable () -> StoreFigures?
    /// The peer transport's figures (nil without peers to talk to).
    var peerStatistics: @Sendable () -> PeerTransportStatistics? = { nil }
}

extension MetricNameDescriptor {
    /// A metric named as etcd names it (the whole name given, no unit appended).
    static func etcd(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
