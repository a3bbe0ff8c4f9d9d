import EtcdTestSupport
import Foundation
import Testing

/// `etcdctl endpoint status` and `endpoint health`, compared with real etcd on what must match.
@Suite("Endpoint compatibility with real etcd")
struct EndpointCompatibilityTests {
    /// The parts of `endpoint status -w json` that two servers must agree on: its shape, the
    /// header revision, a non-empty database, the raft term, and the presence (not the values) of
    /// the other raft fields. Versions, sizes, IDs and indexes legitimately differ.
    static func comparableStatus(_ output: String, previous: JSONValue?) -> Observation {
        guard let parsed = try? JSONValue(parsing: output), let status = parsed[0]?["Status"] else {
            return .text("unparsable: \(output)")
        }
        func present(_ field: String) -> JSONValue { .bool(status[field]?.unsignedValue != nil) }
        // A write is one raft entry in etcd, so the raft index moves by one per write; it starts
        // at 4 on both (the member's addition, the leader's empty entry, the member's published
        // attributes, the cluster version).
        func delta(_ field: String) -> JSONValue {
            guard let now = status[field]?.integerValue, let before = previous?[0]?["Status"]?[field]?.integerValue
            else { return .null }
            return .number(String(now - before))
        }
        let version = status["version"]?.stringValue ?? ""
        let versionShape = version.split(separator: ".").count == 3
            && version.split(separator: ".").allSatisfy { part in part.allSatisfy(\.isNumber) }
        return .json(
            .object([
                "entries": .number(String(parsed.arrayCount)),
                "endpoint": parsed[0]?["Endpoint"] ?? .null,
                "header.revision": status["header"]?["revision"] ?? .null,
                "header.cluster_id present": .bool(status["header"]?["cluster_id"]?.unsignedValue != nil),
                "version is x.y.z": .bool(versionShape),
                "dbSize > 0": .bool((status["dbSize"]?.integerValue ?? 0) > 0),
                "raftIndex present": present("raftIndex"),
                "raftTerm present": present("raftTerm"),
                // Both run Raft: a fresh single member elects itself once, in term 2.
                "raftTerm": status["raftTerm"] ?? .null,
                "leader present": present("leader"),
                "leader is the answering member": .bool(
                    status["leader"] != nil && status["leader"] == status["header"]?["member_id"]
                ),
                "raftAppliedIndex present": present("raftAppliedIndex"),
                "raftAppliedIndex == raftIndex": .bool(status["raftAppliedIndex"] == status["raftIndex"]),
                "dbSizeInUse present": present("dbSizeInUse"),
                "raftIndex moved by": delta("raftIndex"),
                "raftIndex": status["raftIndex"] ?? .null,
                "errors": status["errors"] ?? .null,
                "isLearner": status["isLearner"] ?? .null,
            ])
        )
    }

    @Test("endpoint status reports the same revision, a non-empty database and raft progress")
    func status() async throws {
        try await expectCompatible("endpoint status") { side in
            var previous: JSONValue?
            for command in [["put", "a", "1"], ["put", "b", "2"], ["del", "a"], ["get", "b"], ["del", "missing"]] {
                try await side.etcdctl(command)
                let result = try await side.etcdctl(["endpoint", "status", "-w", "json"], record: false)
                let output = result.standardOutput.replacingEndpoint(side.server.clientEndpoint)
                side.record("etcdctl endpoint status -w json (exit)", .text(result.exit.description))
                side.record(
                    "etcdctl endpoint status -w json (comparable fields)",
                    Self.comparableStatus(output, previous: previous)
                )
                previous = try? JSONValue(parsing: output)
            }
        }
    }

    @Test("member list shows the one member with its name and URLs, its ID being the header's member ID")
    func memberList() async throws {
        try await expectCompatible("member list") { side in
            let result = try await side.etcdctl(["member", "list", "-w", "json"], record: false)
            side.record("etcdctl member list -w json (exit)", .text(result.exit.description))
            guard let parsed = try? JSONValue(parsing: result.standardOutput),
                case .array(let members)? = parsed["members"]
            else {
                side.record("etcdctl member list -w json", .text("unparsable: \(result.standardOutput)"))
                return
            }
            let memberID = parsed["header"]?["member_id"]
            let server = side.server
            let comparable = members.map { member -> JSONValue in
                guard case .object(var fields) = member else { return member }
                fields["ID"] = .bool(fields["ID"] != nil && fields["ID"] == memberID)
                for urls in ["peerURLs", "clientURLs"] {
                    if case .array(let list)? = fields[urls] {
                        fields[urls] = .array(
                            list.map {
                                .string(
                                    ($0.stringValue ?? "")
                                        .replacingOccurrences(of: String(server.clientPort), with: "<client port>")
                                        .replacingOccurrences(of: String(server.peerPort), with: "<peer port>")
                                )
                            }
                        )
                    }
                }
                return .object(fields)
            }
            side.record(
                "etcdctl member list -w json (members, ID replaced by whether it equals header.member_id)",
                .json(.object(["header": EtcdJSON.normalize(parsed)["header"] ?? .null, "members": .array(comparable)]))
            )
            let simple = try await side.etcdctl(["member", "list"], record: false)
            side.record("etcdctl member list (exit)", .text(simple.exit.description))
        }
    }

    @Test("endpoint hashkv gives the same hash of the MVCC history at every revision, before and after compaction")
    func hashKV() async throws {
        try await expectCompatible("endpoint hashkv") { side in
            try await side.etcdctl("endpoint", "hashkv", "-w", "json")
            for (key, value) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("ab", "5")] {
                try await side.etcdctl("put", key, value)
            }
            try await side.etcdctl("del", "b")
            try await side.etcdctl("del", "a", "--prefix")
            try await side.etcdctl("put", "a", "again")
            for revision in 0...10 {
                try await side.etcdctl("endpoint", "hashkv", "--rev=\(revision)", "-w", "json")
            }
            try await side.etcdctl("endpoint", "hashkv")
            try await side.etcdctl("compact", "5")
            for revision in [0, 4, 5, 6, 9] {
                try await side.etcdctl("endpoint", "hashkv", "--rev=\(revision)", "-w", "json")
            }
            try await side.etcdctl("compact", "9", "--physical")
            try await side.etcdctl("endpoint", "hashkv", "-w", "json")
        }
    }

    @Test("endpoint health reports healthy in the simple and JSON formats")
    func health() async throws {
        try await expectCompatible("endpoint health", referenceMentions: ["is healthy"]) { side in
            let simple = try await side.etcdctl(["endpoint", "health"], record: false)
            side.record(
                "etcdctl endpoint health",
                .text(
                    "\(simple.exit)\n"
                        + (simple.standardOutput + simple.standardError)
                        .replacingEndpoint(side.server.clientEndpoint).replacingDuration()
                ),
                errorOutput: ""
            )
            let json = try await side.etcdctl(["endpoint", "health", "-w", "json"], record: false)
            var fields: [String: JSONValue] = ["exit": .string(json.exit.description)]
            if let parsed = try? JSONValue(parsing: json.standardOutput), let first = parsed[0] {
                fields["health"] = first["health"] ?? .null
                fields["error"] = first["error"] ?? .null
                fields["took present"] = .bool(first["took"]?.stringValue != nil)
            } else {
                fields["unparsable"] = .string(json.standardOutput)
            }
            side.record("etcdctl endpoint health -w json (comparable fields)", .json(.object(fields)))
        }
    }
}

extension JSONValue {
    fileprivate var arrayCount: Int {
        if case .array(let elements) = self { return elements.count }
        return 0
    }
}

extension String {
    fileprivate func replacingEndpoint(_ endpoint: String) -> String {
        replacingOccurrences(of: endpoint, with: "<endpoint>")
    }

    /// Replaces `took = 1.2ms` by `took = <duration>`.
    fileprivate func replacingDuration() -> String {
        guard let range = range(of: "took = ") else { return self }
        let rest = self[range.upperBound...]
        let end = rest.firstIndex(where: { $0 == "\n" }) ?? rest.endIndex
        return String(self[..<range.upperBound]) + "<duration>" + String(rest[end...])
    }
}
