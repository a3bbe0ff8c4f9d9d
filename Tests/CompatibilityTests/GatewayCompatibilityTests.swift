import EtcdTestSupport
import Testing

/// etcd's HTTP endpoints on the client port: the JSON gateway for KV (`/v3/kv/...`, bytes in
/// base64, int64 as strings), `/version` and `/health`.
@Suite("HTTP/JSON gateway compatibility with real etcd")
struct GatewayCompatibilityTests {
    /// While swift-etcd does not answer HTTP/1.1 on its client port, the gateway is a known gap:
    /// excused only in HTTP steps that swift-etcd left unanswered (or answered with no JSON
    /// where etcd answered JSON); every other step must agree.
    static func gatewayMissing(_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? {
        if candidate.label.hasPrefix("etcdctl get revision-probe"), case .json(let left) = reference.output,
            case .json(let right) = candidate.output,
            EtcdJSON.differences(reference: left, candidate: right).allSatisfy({ $0.hasPrefix("$.header.revision:") })
        {
            // The writes made through the gateway did not happen, so the revision after them is
            // lower; everything else in the probe must agree.
            return "the writes made through etcd's HTTP/JSON gateway did not happen on swift-etcd"
        }
        guard candidate.label.hasPrefix("HTTP ") else { return unimplementedRPC(reference, candidate) }
        if candidate.exit == "no HTTP response" { return "swift-etcd does not serve etcd's HTTP/JSON gateway yet" }
        if case .json = reference.output, case .text = candidate.output {
            return "swift-etcd does not serve etcd's HTTP/JSON gateway yet"
        }
        // A step that records a summary of the response: status 0 is no HTTP response at all.
        if case .json(let summary) = candidate.output, summary["status"]?.integerValue == 0 {
            return "swift-etcd does not serve etcd's HTTP/JSON gateway yet"
        }
        return nil
    }

    @Test("KV through the JSON gateway: put, range, delete, txn, compaction and errors")
    func kvGateway() async throws {
        try await expectCompatible(
            "JSON gateway KV",
            referenceMentions: ["etcdserver: key is not provided", "etcdserver: requested lease not found"],
            knownDifference: Self.gatewayMissing
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
            try await side.http("POST", "/v3/kv/range", body: #"{bad json"#)
            try await side.recordRevision()
        }
    }

    @Test("GET /health and the shape of GET /version")
    func healthAndVersion() async throws {
        try await expectCompatible("HTTP health and version", knownDifference: Self.gatewayMissing) { side in
            try await side.http("GET", "/health")
            let version = try await Curl.request("GET", url: side.server.clientURL + "/version")
            var shape: [String: JSONValue] = [:]
            if let parsed = try? JSONValue(parsing: version.body), case .object(let members) = parsed {
                for (key, value) in members {
                    let parts = (value.stringValue ?? "").split(separator: ".")
                    shape[key] = .bool(parts.count == 3 && parts.allSatisfy { $0.allSatisfy(\.isNumber) })
                }
            }
            side.record(
                "HTTP GET /version (status, and whether each field is an x.y.z version)",
                .json(.object(["status": .number(String(version.status)), "fields": .object(shape)]))
            )
        }
    }
}
