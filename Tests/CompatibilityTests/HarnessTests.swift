import EtcdTestSupport
import Foundation
import Testing

/// The comparison machinery itself, without servers: a harness that cannot see differences would
/// let every scenario pass.
@Suite("Side-by-side harness")
struct HarnessTests {
    static let realPut = """
        {"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},\
        "prev_kv":{"key":"YQ==","create_revision":2,"mod_revision":2,"version":1,"value":"MQ=="}}
        """

    @Test("JSON keeps 64-bit numbers exactly and compares objects without regard to key order")
    func jsonParsing() throws {
        let value = try JSONValue(parsing: Self.realPut)
        #expect(value["header"]?["cluster_id"] == .number("14841639068965178418"))
        #expect(value["prev_kv"]?["version"]?.integerValue == 1)
        let reordered = try JSONValue(parsing: #"{"b": [1, 2.5e3, "x\n\u00e9"], "a": {"c": null, "d": true}}"#)
        let original = try JSONValue(parsing: #"{"a": {"d": true, "c": null}, "b": [1, 2.5e3, "x\né"]}"#)
        #expect(reordered == original)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: #"{"a": 1,}"#) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: "[1] 2") }
    }

    @Test("normalization hides cluster, member and term but keeps the revision")
    func normalization() throws {
        let other = Self.realPut
            .replacingOccurrences(of: "14841639068965178418", with: "1")
            .replacingOccurrences(of: "10276657743932975437", with: "2")
            .replacingOccurrences(of: "\"raft_term\":2", with: "\"raft_term\":7")
        let left = EtcdJSON.normalize(try JSONValue(parsing: Self.realPut))
        let right = EtcdJSON.normalize(try JSONValue(parsing: other))
        #expect(left == right)
        #expect(left["header"]?["revision"] == .number("5"))

        let otherRevision = EtcdJSON.normalize(
            try JSONValue(parsing: Self.realPut.replacingOccurrences(of: "\"revision\":5", with: "\"revision\":6"))
        )
        #expect(EtcdJSON.differences(reference: left, candidate: otherRevision) == [
            "$.header.revision: real etcd 5, swift-etcd 6"
        ])
    }

    @Test("differences name the path and show base64 keys and values decoded")
    func differencesAreReadable() throws {
        let left = try JSONValue(parsing: #"{"kvs":[{"key":"YQ==","value":"MQ=="}],"count":1}"#)
        let right = try JSONValue(parsing: #"{"kvs":[{"key":"YQ==","value":"Mg=="},{"key":"Yg=="}],"more":true}"#)
        let found = EtcdJSON.differences(reference: left, candidate: right)
        #expect(found == [
            "$.count: only real etcd has it: 1",
            "$.kvs[0].value: real etcd \"MQ==\" (1), swift-etcd \"Mg==\" (2)",
            "$.kvs[1]: only swift-etcd has it: { \"key\": \"Yg==\" (b) }",
            "$.more: only swift-etcd has it: true",
        ])
        #expect(EtcdJSON.render(left).contains("\"key\": \"YQ==\" (a)"))
    }

    @Test("clientv3's warning lines are reduced to level, message and error")
    func standardErrorNormalization() {
        let stderr = """
            {"level":"warn","ts":"2026-11-22T04:11:48.966Z","caller":"clientv3/retry_interceptor.go:62",\
            "msg":"retrying of unary invoker failed","target":"endpoint://client-3b47/127.0.0.1:23790",\
            "attempt":0,"error":"rpc error: code = NotFound desc = etcdserver: requested lease not found"}
            Error: etcdserver: requested lease not found on 127.0.0.1:23790

            """
        let normalized = CompatibilitySession.normalizeStandardError(stderr, endpoint: "127.0.0.1:23790")
        #expect(normalized == """
            <log warn> retrying of unary invoker failed \
            error="rpc error: code = NotFound desc = etcdserver: requested lease not found"
            Error: etcdserver: requested lease not found on <endpoint>

            """)
    }

    @Test("a report lists each differing step with exit codes, outputs and errors of both sides")
    func reportShowsDifferences() throws {
        let put = TranscriptEntry(label: "etcdctl put a 1", exit: "exit code 0", output: .text("OK\n"))
        let get = TranscriptEntry(
            label: "etcdctl get a -w json",
            exit: "exit code 0",
            output: .json(try JSONValue(parsing: #"{"kvs":[{"key":"YQ==","value":"MQ=="}]}"#))
        )
        var wrongGet = get
        wrongGet.output = .json(try JSONValue(parsing: #"{"kvs":[{"key":"YQ==","value":"Mg=="}]}"#))
        wrongGet.exit = "exit code 1"
        wrongGet.errorOutput = "Error: boom"
        let extra = TranscriptEntry(label: "etcdctl del a", exit: "exit code 0", output: .text("1\n"))

        let agreeing = SideBySideReport(
            name: "same",
            reference: Transcript(flavor: .realEtcd, entries: [put, get]),
            candidate: Transcript(flavor: .swiftEtcd, entries: [put, get])
        )
        #expect(agreeing.matches)

        let report = SideBySideReport(
            name: "different",
            reference: Transcript(flavor: .realEtcd, entries: [put, get]),
            candidate: Transcript(flavor: .swiftEtcd, entries: [put, wrongGet, extra])
        )
        let differences = report.differences
        try #require(differences.count == 2)
        #expect(differences[0].hasPrefix("step 2: etcdctl get a -w json"))
        #expect(differences[0].contains("exit: real etcd exit code 0, swift-etcd exit code 1"))
        #expect(differences[0].contains("$.kvs[0].value: real etcd \"MQ==\" (1), swift-etcd \"Mg==\" (2)"))
        #expect(differences[0].contains("stderr of swift-etcd: \"Error: boom\""))
        #expect(differences[1].hasPrefix("step 3: only swift-etcd ran it: etcdctl del a"))
        #expect(report.description.hasPrefix("different: 2 of 3 steps differ between real etcd and swift-etcd"))
    }
}
