import EtcdTestSupport
import Testing

/// etcd's HTTP endpoints: on the client port beside gRPC, the JSON gateway (`/v3/...`, bytes in
/// base64, int64 as strings), `/version`, `/health`, `/livez`, `/readyz` and `/metrics`; and on
/// `--listen-metrics-urls` the same without the gateway.
@Suite("HTTP/JSON gateway compatibility with real etcd")
struct GatewayCompatibilityTests {
    /// Where etcd 3.4 (the reference) and etcd 3.5 (what swift-etcd implements) answer
    /// differently; each case is excused only in the exact shape it takes, every other
    /// difference fails.
    static func etcd34Versus35(_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? {
        let path = candidate.label.split(separator: " ").dropFirst(2).first.map(String.init) ?? ""
        // 3.5 added the `reason` field to /health's JSON.
        if path.hasPrefix("/health"), reference.exit == candidate.exit,
            case .json(let left) = reference.output, case .json(let right) = candidate.output,
            EtcdJSON.differences(reference: left, candidate: right).allSatisfy({ $0.hasPrefix("$.reason: only") })
        {
            return "etcd 3.5's /health also writes a \"reason\" field, 3.4's does not"
        }
        // 3.5 added /livez and /readyz.
        if path.hasPrefix("/livez") || path.hasPrefix("/readyz"), reference.exit == "HTTP 404",
            reference.output == .text("404 page not found\n"), candidate.exit == "HTTP 200"
        {
            return "etcd 3.4 has no /livez and /readyz (added in 3.5)"
        }
        // The grpc-gateway in 3.4 answers FailedPrecondition (e.g. "lease already exists") with
        // 412, the one in 3.5 with 400; the body is the same.
        if path.hasPrefix("/v3/"), reference.exit == "HTTP 412", candidate.exit == "HTTP 400",
            reference.output == candidate.output, candidate.output != .text("")
        {
            return "etcd 3.4's gateway answers FailedPrecondition with HTTP 412, 3.5's with 400"
        }
        // 3.5's Alarm fills the response header; 3.4's leaves it out.
        if path == "/v3/maintenance/alarm", reference.exit == candidate.exit, reference.output == .json(.object([:])),
            case .json(let right) = candidate.output, case .object(let members) = right, Array(members.keys) == ["header"]
        {
            return "etcd 3.4's Alarm answers without a response header, 3.5's with one"
        }
        return nil
    }

    @Test("KV through the JSON gateway: put, range, delete, txn, compaction and errors")
    func kvGateway() async throws {
        try await expectCompatible(
            "JSON gateway KV",
            referenceMentions: ["etcdserver: key is not provided", "etcdserver: requested lease not found"],
            knownDifference: Self.etcd34Versus35
        ) { side in
            // "foo" = Zm9v, "bar" = YmFy, "baz" = YmF6, "fop" = Zm9w, "\0" = AA==
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy"}"#)
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#)
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"YmFy","value":"Zm9v"}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v"}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"AA==","range_end":"AA=="}"#)
            try await side.http(
                "POST",
                "/v3/kv/range",
                body: #"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"MOD","limit":1}"#
            )
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"AA==","range_end":"AA==","count_only":true}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v","revision":"2"}"#)
            try await side.http(
                "POST",
                "/v3/kv/txn",
                body: #"""
                    {"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],
                     "success":[{"request_put":{"key":"Zm9v","value":"cXV4"}},{"request_range":{"key":"Zm9v"}}],
                     "failure":[{"request_range":{"key":"YmFy"}}]}
                    """#
            )
            try await side.http("POST", "/v3/kv/deleterange", body: #"{"key":"YmFy","prev_kv":true}"#)
            try await side.http("POST", "/v3/kv/compaction", body: #"{"revision":"3"}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v","revision":"2"}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":""}"#)
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy","lease":"5"}"#)
            // Unknown fields are ignored, and so is whatever follows the first JSON value.
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v","no_such_field":1} trailing"#)
            try await side.recordRevision()
        }
    }

    @Test("Malformed requests, unknown paths and wrong methods get the gateway's and Go's answers")
    func malformedRequests() async throws {
        try await expectCompatible(
            "JSON gateway errors",
            referenceMentions: [
                "unexpected EOF", "invalid character 'b' looking for beginning of object key string", "Method Not Allowed",
                "404 page not found", "Not Found",
            ],
            knownDifference: Self.etcd34Versus35
        ) { side in
            for body in [
                "{bad json", #"{"key":"#, #"{"key" "x"}"#, #"{"key":tru}"#, #"{"key":-}"#, "[1]", "12", "null", "",
                " \n",
            ] {
                try await side.http("POST", "/v3/kv/range", body: body)
            }
            try await side.http("GET", "/v3/kv/range")
            try await side.http("POST", "/v3/kv/no-such-call", body: "{}")
            try await side.http("GET", "/no/such/path")
            try await side.http("POST", "/version")
            try await side.http("POST", "/health")
            // etcd 3.4's old gateway prefix still reaches the gateway.
            try await side.http("POST", "/v3beta/kv/range", body: #"{"key":"Zm9v"}"#)
        }
    }

    @Test("Lease, cluster and maintenance calls through the JSON gateway")
    func leaseClusterAndMaintenanceGateway() async throws {
        try await expectCompatible(
            "JSON gateway lease, cluster and maintenance",
            referenceMentions: ["etcdserver: requested lease not found", "etcdserver: lease already exists"],
            knownDifference: Self.etcd34Versus35
        ) { side in
            try await side.http("POST", "/v3/lease/grant", body: #"{"TTL":"60","ID":"77"}"#)
            try await side.http("POST", "/v3/lease/grant", body: #"{"TTL":"60","ID":"77"}"#)
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy","lease":"77"}"#)
            // The TTL left depends on when the call lands; recorded as whether it is plausible.
            try await side.httpReshaped("POST", "/v3/lease/timetolive", body: #"{"ID":"77","keys":true}"#) { json in
                Self.replacing("TTL", in: json) { ttl in .bool((55...60).contains(Int(ttl.stringValue ?? "") ?? -1)) }
            }
            try await side.http("POST", "/v3/kv/lease/timetolive", body: #"{"ID":"78"}"#)
            try await side.http("POST", "/v3/lease/leases", body: "{}")
            try await side.http("POST", "/v3/kv/lease/leases", body: "{}")
            // Keepalives as a stream: each request in the body is answered on its own line.
            try await side.recordStream("/v3/lease/keepalive", body: #"{"ID":"77"} {"ID":"79"}"#)
            try await side.http("POST", "/v3/lease/revoke", body: #"{"ID":"77"}"#)
            try await side.http("POST", "/v3/kv/lease/revoke", body: #"{"ID":"77"}"#)
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v"}"#)
            try await side.http("POST", "/v3/maintenance/alarm", body: #"{"action":"GET"}"#)
            // Versions and sizes differ by implementation: the fields present, and who leads.
            try await side.httpReshaped("POST", "/v3/maintenance/status", body: "{}") { json in
                guard case .object(let members) = json else { return json }
                return .object([
                    "fields": .array(members.keys.sorted().map { .string($0) }),
                    "leader_is_this_member": .bool(members["leader"] == json["header"]?["member_id"]),
                ])
            }
            // Member IDs and peer URLs (with each side's peer port) differ; the rest must agree.
            try await side.httpReshaped("POST", "/v3/cluster/member/list", body: "{}") { json in
                let counted = Self.replacing("peerURLs", in: json) { urls in .number(String(urls.arrayCount)) }
                return Self.replacing("ID", in: counted) { id in .bool(id == json["header"]?["member_id"]) }
            }
        }
    }

    @Test("Watch through the JSON gateway streams {\"result\":…} lines for as long as the client stays")
    func watchGateway() async throws {
        try await expectCompatible("JSON gateway watch", knownDifference: Self.etcd34Versus35) { side in
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy"}"#)
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9w","value":"YmF6"}"#)
            try await side.http("POST", "/v3/kv/deleterange", body: #"{"key":"Zm9v"}"#)
            // From a past revision, so that the events are there at once whatever the timing;
            // the client leaves after a while (curl's time limit), which ends the stream.
            try await side.recordStream(
                "/v3/watch", body: #"{"create_request":{"key":"Zm9v","range_end":"Zm9w","start_revision":"2","prev_kv":true}}"#)
        }
    }

    @Test("GET /health, /livez, /readyz and the shape of GET /version")
    func healthAndVersion() async throws {
        try await expectCompatible("HTTP health and version", knownDifference: Self.etcd34Versus35) { side in
            try await side.http("GET", "/health")
            try await side.http("GET", "/health?serializable=true")
            try await side.http("GET", "/health?exclude=NOSPACE")
            try await side.http("GET", "/livez")
            try await side.http("GET", "/readyz")
            try await side.http("GET", "/readyz?verbose")
            try await side.recordVersionShape(baseURL: side.server.clientURL)
        }
    }

    @Test("A raised alarm makes /health unhealthy unless excluded, until it is cleared")
    func healthWithAlarm() async throws {
        try await expectCompatible("HTTP health with an alarm", knownDifference: Self.etcd34Versus35) { side in
            let status = try await Curl.request("POST", url: side.server.clientURL + "/v3/maintenance/status", body: "{}")
            let member = (try? JSONValue(parsing: status.body))?["header"]?["member_id"]?.stringValue ?? ""
            for action in ["ACTIVATE", "DEACTIVATE"] {
                // The body names this side's member, so the step is recorded under a label of its own.
                let alarm = try await Curl.request(
                    "POST", url: side.server.clientURL + "/v3/maintenance/alarm",
                    body: #"{"action":"\#(action)","memberID":"\#(member)","alarm":"NOSPACE"}"#)
                side.record(
                    TranscriptEntry(
                        label: "HTTP POST /v3/maintenance/alarm \(action) NOSPACE for this member (status)",
                        exit: "HTTP \(alarm.status)", output: .text("")))
                try await side.http("GET", "/health")
                try await side.http("GET", "/health?exclude=NOSPACE")
                try await side.http("GET", "/health?exclude=CORRUPT&serializable=true")
                try await side.http("GET", "/readyz")
            }
        }
    }

    @Test("GET /metrics: Prometheus text with the metrics etcd's dashboards use")
    func metrics() async throws {
        try await expectCompatible("HTTP metrics") { side in
            // Some traffic first, so that counters and histograms have moved.
            try await side.http("POST", "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy"}"#)
            try await side.etcdctl("get", "foo")
            try await side.recordMetricNames(baseURL: side.server.clientURL)
        }
    }

    @Test("--listen-metrics-urls serves health and metrics, and not the gateway")
    func metricsListener() async throws {
        async let reference = Self.metricsListenerTranscript(.realEtcd)
        async let candidate = Self.metricsListenerTranscript(.candidate)
        let report = try await SideBySideReport(name: "--listen-metrics-urls", reference: reference, candidate: candidate)
        expectCompatible(report, knownDifference: Self.etcd34Versus35)
    }

    @Test("With --experimental-grpc-server=grpc-swift the client port serves HTTP/1.1 beside gRPC too")
    func grpcSwiftServerServesHTTP() async throws {
        let options = EtcdOptions(extraArguments: ["--experimental-grpc-server=grpc-swift"])
        try await withEtcd(.swiftEtcd, options: options) { server in
            let health = try await Curl.request("GET", url: server.clientURL + "/health")
            #expect(health.status == 200 && health.body == #"{"health":"true","reason":""}"#)
            let put = try await Curl.request(
                "POST", url: server.clientURL + "/v3/kv/put", body: #"{"key":"Zm9v","value":"YmFy"}"#)
            #expect(put.status == 200 && put.contentType == "application/json")
            // gRPC on the same port, from grpc-go.
            let get = try await server.etcdctl.run("get", "foo", "--print-value-only")
            #expect(get.succeeded && get.standardOutput == "bar\n", "\(get)")
            // The grpc-swift server's calls are counted as the lean server's are.
            let metrics = try await Curl.request("GET", url: server.clientURL + "/metrics")
            let handled = #"grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} "#
            let line = metrics.body.split(separator: "\n").first { $0.hasPrefix(handled) }
            let count = line.flatMap { Double($0.dropFirst(handled.count)) } ?? 0
            #expect(count >= 1, "\(line ?? "no line for Range's OK calls")")
        }
    }

    static func metricsListenerTranscript(_ flavor: ServerFlavor) async throws -> Transcript {
        let port = try LoopbackPort.allocate()
        let metricsURL = "http://127.0.0.1:\(port)"
        let options = EtcdOptions(extraArguments: ["--listen-metrics-urls=\(metricsURL)"])
        return try await withEtcd(flavor, options: options) { server in
            let side = CompatibilitySession(server: server)
            for path in ["/health", "/livez", "/readyz", "/version", "/no/such/path"] {
                try await side.http("GET", path, baseURL: metricsURL)
            }
            try await side.http("POST", "/v3/kv/range", body: #"{"key":"Zm9v"}"#, baseURL: metricsURL)
            try await side.recordMetricNames(baseURL: metricsURL)
            return side.transcript
        }
    }

    /// The metrics etcd's Grafana dashboards query, which both servers must export.
    static let dashboardMetricNames = [
        "etcd_server_has_leader", "etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total", "etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
        "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_debugging_mvcc_keys_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_disk_wal_fsync_duration_seconds_sum",
        "etcd_disk_wal_fsync_duration_seconds_count", "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_sum", "etcd_disk_backend_commit_duration_seconds_count",
        "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
        "grpc_server_started_total", "grpc_server_handled_total", "etcd_server_quota_backend_bytes",
        "etcd_server_is_leader", "etcd_server_health_success", "etcd_server_health_failures", "etcd_server_id",
        "etcd_server_version", "etcd_cluster_version", "process_resident_memory_bytes", "process_open_fds",
        "process_cpu_seconds_total", "process_start_time_seconds",
    ]

    /// Replaces the value of every member named `key`, at any depth.
    static func replacing(_ key: String, in value: JSONValue, with transform: (JSONValue) -> JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            var result: [String: JSONValue] = [:]
            for (name, member) in members {
                result[name] = name == key ? transform(member) : replacing(key, in: member, with: transform)
            }
            return .object(result)
        case .array(let elements):
            return .array(elements.map { replacing(key, in: $0, with: transform) })
        default:
            return value
        }
    }
}

extension JSONValue {
    fileprivate var arrayCount: Int {
        if case .array(let elements) = self { return elements.count }
        return -1
    }
}

extension CompatibilitySession {
    /// Sends a request and records its status and its JSON body after `reshape` (for answers
    /// that hold values that differ by implementation or by timing).
    fileprivate func httpReshaped(
        _ method: String, _ path: String, body: String, _ reshape: (JSONValue) -> JSONValue
    ) async throws {
        let result = try await Curl.request(method, url: server.clientURL + path, body: body)
        var output = Self.observation(of: result.body, endpoint: server.clientEndpoint)
        if case .json(let json) = output { output = .json(reshape(json)) }
        record(
            TranscriptEntry(
                label: "HTTP \(method) \(path) \(body) (reshaped)", exit: result.status == 0 ? "no HTTP response" : "HTTP \(result.status)",
                output: output))
    }

    /// Sends a request to a streaming gateway call, stays for `seconds`, then records the
    /// status, content type and the JSON lines received meanwhile.
    fileprivate func recordStream(_ path: String, body: String, seconds: Int64 = 2) async throws {
        let stream = try await Curl.request("POST", url: server.clientURL + path, body: body, timeout: .seconds(seconds))
        let lines = stream.body.split(separator: "\n").map { line -> JSONValue in
            if case .json(let value) = Self.observation(of: String(line), endpoint: server.clientEndpoint) { return value }
            return .string("not JSON: \(line)")
        }
        record(
            "HTTP POST \(path) \(body) (status, content type, lines received in \(seconds) s)",
            .json(.object([
                "status": .number(String(stream.status)), "content_type": .string(stream.contentType), "lines": .array(lines),
            ]))
        )
    }

    /// Records /version's status and whether each field is an x.y.z version.
    fileprivate func recordVersionShape(baseURL: String) async throws {
        let version = try await Curl.request("GET", url: baseURL + "/version")
        var shape: [String: JSONValue] = [:]
        if let parsed = try? JSONValue(parsing: version.body), case .object(let members) = parsed {
            for (key, value) in members {
                let parts = (value.stringValue ?? "").split(separator: ".")
                shape[key] = .bool(parts.count == 3 && parts.allSatisfy { $0.allSatisfy(\.isNumber) })
            }
        }
        record(
            "HTTP GET /version (status, content type, and whether each field is an x.y.z version)",
            .json(.object([
                "status": .number(String(version.status)), "content_type": .string(version.contentType),
                "fields": .object(shape),
            ]))
        )
    }

    /// Records /metrics's status and content type, and which of the dashboards' metrics it has
    /// (names, not values, which differ by implementation).
    fileprivate func recordMetricNames(baseURL: String) async throws {
        let metrics = try await Curl.request("GET", url: baseURL + "/metrics")
        let exported = Set(
            metrics.body.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
                String(line.prefix { $0 != "{" && $0 != " " })
            })
        var present: [String: JSONValue] = [:]
        for name in GatewayCompatibilityTests.dashboardMetricNames { present[name] = .bool(exported.contains(name)) }
        record(
            "HTTP GET /metrics (status, content type, which of the dashboards' metrics it exports)",
            .json(.object([
                "status": .number(String(metrics.status)), "content_type": .string(metrics.contentType),
                "present": .object(present),
            ]))
        )
    }
}
