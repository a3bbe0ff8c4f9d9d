import EtcdAPI
import GRPCCore
import Prometheus

/// go-grpc-prometheus's server metrics, which etcd exports and its dashboards chart:
/// `grpc_server_started_total`, `grpc_server_handled_total` (by status code),
/// `grpc_server_msg_received_total` and `grpc_server_msg_sent_total`, labelled by type, service
/// and method.
///
/// As go-grpc-prometheus does when a server registers, every method of etcd's services gets its
/// counters up front (every status code included), so a call only increments counters found by
/// a lookup in an immutable dictionary.
final class GRPCServerMetrics: Sendable {
    struct MethodCounters: Sendable {
        let started: Prometheus.Counter
        /// Indexed by the gRPC status code (0 through 16).
        let handled: [Prometheus.Counter]
        let received: Prometheus.Counter
        let sent: Prometheus.Counter

        func handled(code: Int) -> Prometheus.Counter {
            handled[handled.indices.contains(code) ? code : 2]  // 2: Unknown
        }
    }

    /// By the method's path, `/etcdserverpb.KV/Range`.
    private let countersByPath: [String: MethodCounters]

    /// The names go-grpc-prometheus gives the codes, by code.
    static let codeNames = [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
        "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
        "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    ]

    /// etcd's services as its gRPC server registers them.
    static let servedMethods: [MethodDescriptor] =
        Etcdserverpb_KV.Method.descriptors + Etcdserverpb_Watch.Method.descriptors
        + Etcdserverpb_Lease.Method.descriptors + Etcdserverpb_Cluster.Method.descriptors
        + Etcdserverpb_Maintenance.Method.descriptors + Etcdserverpb_Auth.Method.descriptors

    /// Methods whose calls are streams (every other one is unary).
    static let streamTypes: [String: String] = [
        Etcdserverpb_Watch.Method.Watch.descriptor.fullyQualifiedMethod: "bidi_stream",
        Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor.fullyQualifiedMethod: "bidi_stream",
        Etcdserverpb_Maintenance.Method.Snapshot.descriptor.fullyQualifiedMethod: "server_stream",
    ]

    init(registry: PrometheusCollectorRegistry) {
        var counters: [String: MethodCounters] = [:]
        for method in Self.servedMethods {
            let labels = [
                ("grpc_method", method.method),
                ("grpc_service", method.service.fullyQualifiedService),
                ("grpc_type", Self.streamTypes[method.fullyQualifiedMethod] ?? "unary"),
            ]
            counters["/" + method.fullyQualifiedMethod] = MethodCounters(
                started: registry.makeCounter(descriptor: .etcd("grpc_server_started_total", "Total number of RPCs started on the server."), labels: labels),
                handled: Self.codeNames.map { code in
                    registry.makeCounter(descriptor: .etcd("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."), labels: [("grpc_code", code)] + labels)
                },
                received: registry.makeCounter(descriptor: .etcd("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server."), labels: labels),
                sent: registry.makeCounter(descriptor: .etcd("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server."), labels: labels)
            )
        }
        countersByPath = counters
    }

    /// The counters of the method at `path` (`/etcdserverpb.KV/Range`), nil for one not served.
    func counters(path: String) -> MethodCounters? { countersByPath[path] }
}
