import NIOHTTP1

/// What etcd serves over HTTP/1.1: on the client port everything (health, version, metrics and
/// the JSON gateway), on `--listen-metrics-urls` health and metrics only (etcd answers 404 for
/// `/version` there).
struct HTTPEndpoints: HTTPResponder {
    let health: HealthEndpoints
    let metrics: ServerMetrics
    /// nil on the metrics listeners, and with `--enable-grpc-gateway=false`.
    let gateway: JSONGateway?
    /// The client port answers CORS preflights, as etcd's does; the metrics listeners do not.
    let isClientPort: Bool

    /// etcd answers every client-port request with these (its default `--cors` is `*`).
    static let corsHeaders = [
        ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
        ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
        ("Access-Control-Allow-Origin", "*"),
    ]

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        // A CORS preflight, answered before any route on the client port.
        if isClientPort && request.method == .OPTIONS { return HTTPResponse(status: .ok, body: []) }
        if let answer = await health.respond(to: request) { return answer }
        switch request.path {
        case "/version" where isClientPort:
            guard request.method == .GET else { return .methodNotAllowed(allow: "GET") }
            let body = #"{"etcdserver":"# + jsonQuoted(EtcdVersion.server) + #","etcdcluster":"#
                + jsonQuoted(EtcdVersion.cluster) + "}"
            return HTTPResponse(status: .ok, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
        case "/metrics":
            return HTTPResponse(
                status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.exposition())
        default:
            if let gateway, let answer = await gateway.respond(to: request) { return answer }
            // Go's ServeMux for a path nobody handles.
            return .goError(.notFound, "404 page not found")
        }
    }
}
