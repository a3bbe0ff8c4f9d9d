import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

/// Alarms and the backend space quota: `etcdctl alarm list|disarm`, NOSPACE raised by writes over
/// `--quota-backend-bytes`, what still works while it is raised, and python-etcd3's alarm calls.
@Suite("Alarms and the space quota compared with real etcd")
struct AlarmCompatibilityTests {
    /// The answering member's ID (decimal, as alarms print it), from `endpoint status`.
    static func memberID(_ side: CompatibilitySession) async throws -> String {
        let status = try await side.etcdctl(["endpoint", "status", "-w", "json"], record: false)
        let parsed = try JSONValue(parsing: status.standardOutput)
        return parsed[0]?["Status"]?["header"]?["member_id"]?.unsignedValue.map { "\($0)" } ?? "?"
    }

    /// Runs etcdctl and records its output with the member's ID replaced by `<member>`.
    static func recordWithMemberID(_ side: CompatibilitySession, _ member: String, _ arguments: String...) async throws {
        let result = try await side.etcdctl(arguments, record: false)
        side.record(
            TranscriptEntry(
                label: "etcdctl " + arguments.joined(separator: " "),
                exit: result.exit.description,
                output: .text(result.standardOutput.replacingOccurrences(of: member, with: "<member>")),
                errorOutput: CompatibilitySession.normalizeStandardError(
                    result.standardError, endpoint: side.server.clientEndpoint)
            )
        )
    }

    /// etcd 3.4 (the reference here) answers Alarm without a response header, so its etcdctl
    /// prints `{}` as JSON, nothing as protobuf, and crashes printing fields; etcd 3.5, which
    /// swift-etcd follows, fills the header in. Excused only in those forms, only for that.
    static func headerSince35(_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? {
        guard reference.label.hasPrefix("etcdctl alarm ") else { return nil }
        let reason = "etcd 3.4 sends Alarm responses without a header; 3.5 and swift-etcd fill it in"
        switch (reference.output, candidate.output) {
        case (.json(let left), .json(let right)):
            let differences = EtcdJSON.differences(reference: left, candidate: right)
            return differences.allSatisfy { $0.hasPrefix("$.header:") } ? reason : nil
        case (.text(let left), .text(let right)):
            if reference.label.hasSuffix("-w protobuf"), left.isEmpty, !right.isEmpty { return reason }
            if reference.label.hasSuffix("-w fields"), reference.errorOutput.contains("(*fieldsPrinter).hdr"),
                right.contains("\"Revision\" : ")
            {
                return reason
            }
            return nil
        default:
            return nil
        }
    }

    @Test("alarm list and disarm with no alarm raised, in every output format")
    func noAlarms() async throws {
        try await expectCompatible("alarm list, no alarms", knownDifference: Self.headerSince35) { side in
            for format in ["simple", "json", "protobuf", "fields"] {
                try await side.etcdctl("alarm", "list", "-w", format)
            }
            // With nothing to disarm etcdctl prints a response it made up itself (and crashes
            // printing its missing header as fields, on either server).
            for format in ["simple", "json", "protobuf"] {
                try await side.etcdctl("alarm", "disarm", "-w", format)
            }
            try await side.etcdctl("alarm", "list", "extra")
        }
    }

    @Test("writes over the quota fail with NOSPACE and raise the alarm; reads, deletes and compaction go on; disarm")
    func noSpace() async throws {
        let quota = 2 * 1024 * 1024
        let value = String(repeating: "v", count: 100_000)
        try await expectCompatible(
            "NOSPACE", options: EtcdOptions(extraArguments: ["--quota-backend-bytes=\(quota)"]),
            referenceMentions: ["database space exceeded", "alarm:NOSPACE"]
        ) { side in
            let member = try await Self.memberID(side)
            try await side.etcdctl("put", "small", "1")
            // Big values until the quota refuses one (about 20 fit in 2 MiB on either server).
            var accepted = 0
            var refusal: EtcdctlResult?
            for index in 0..<60 {
                let put = try await side.etcdctl(["put", "big\(index)"], standardInput: value, record: false)
                guard put.succeeded else {
                    refusal = put
                    break
                }
                accepted += 1
            }
            side.record("some big puts were accepted first", .text("\(accepted > 5)"))
            side.record(
                "the put over the quota", .text("exit \(refusal?.exit.description ?? "none")"),
                errorOutput: CompatibilitySession.normalizeStandardError(
                    refusal?.standardError ?? "", endpoint: side.server.clientEndpoint))
            try await Self.recordWithMemberID(side, member, "alarm", "list")
            let status = try await side.etcdctl(["endpoint", "status", "-w", "json"], record: false)
            let errors = try JSONValue(parsing: status.standardOutput)[0]?["Status"]?["errors"]
            side.record(
                "endpoint status errors",
                .text("\(errors ?? .null)".replacingOccurrences(of: member, with: "<member>")))
            // While the alarm is up: puts, txns with puts and lease grants are refused...
            try await side.etcdctl("put", "small", "2")
            try await side.etcdctl(
                ["txn"], standardInput: "\n\nput small 3\n\n")
            try await side.etcdctl("lease", "grant", "60")
            // ...reads, deletes, read-only txns and compaction are not.
            try await side.etcdctl("get", "small")
            try await side.etcdctl("txn", standardInput: "\n\nget small\n\n")
            try await side.etcdctl("del", "big0")
            try await side.etcdctl("get", "big1", "--keys-only")
            try await side.etcdctl("compact", "5")
            try await Self.recordWithMemberID(side, member, "alarm", "disarm")
            try await side.etcdctl("alarm", "list")
            // Disarmed, but the backend has not shrunk (deletion and compaction only free space
            // inside it): the next big put is refused again and raises the alarm again.
            try await side.etcdctl(["put", "big-again"], standardInput: value)
            try await Self.recordWithMemberID(side, member, "alarm", "list")
            try await side.etcdctl("get", "small", "--print-value-only")
            // Recovery as etcd's operators do it: delete, compact, defragment, disarm.
            // (How many big keys fit differs: the two backends lay rows out differently.)
            let deleted = try await side.etcdctl(["del", "big", "--prefix"], record: false)
            side.record("del big --prefix", .text(deleted.exit.description))
            let probe = try await side.etcdctl(["get", "-w", "json", "revision-probe"], record: false)
            let parsed = try? JSONValue(parsing: probe.standardOutput)
            let revision = parsed?["header"]?["revision"]?.integerValue ?? 0
            let compacted = try await side.etcdctl(["compact", "\(revision)", "--physical"], record: false)
            side.record("compact to the current revision", .text(compacted.exit.description))
            try await side.etcdctl("defrag")
            try await Self.recordWithMemberID(side, member, "alarm", "disarm")
            try await side.etcdctl(["put", "big-after-recovery"], standardInput: value)
            try await side.etcdctl("get", "big-after-recovery", "--keys-only")
            try await side.etcdctl("alarm", "list")
        }
    }

    @Test("python-etcd3 raises, lists and disarms alarms; writes wait for the disarm")
    func pythonClient() async throws {
        try await expectCompatible("python-etcd3 alarms", referenceMentions: ["done"]) { side in
            let script = WatchPythonClientTests.repositoryRoot.appendingPathComponent("scripts/alarm-client.py")
            let result = try await WatchPythonClientTests().runPython(script: script, arguments: [side.server.clientEndpoint])
            side.record(
                TranscriptEntry(
                    label: "python3 scripts/alarm-client.py <endpoint>",
                    exit: result.timedOut ? "timed out" : result.exit.description,
                    output: .text(result.standardOutput),
                    errorOutput: result.standardError
                )
            )
        }
    }
}

extension AlarmCompatibilityTests {
    @Test(
        "NOSPACE under a concurrent write load: every acknowledged put is kept; compact, defrag and disarm bring writes back",
        arguments: [ServerFlavor.realEtcd, ServerFlavor.candidate])
    func noSpaceUnderLoad(flavor: ServerFlavor) async throws {
        let options = EtcdOptions(extraArguments: ["--quota-backend-bytes=\(4 * 1024 * 1024)"])
        try await withEtcd(flavor, options: options) { server in
            try await server.withGRPCClient { client in
                let value = Data(repeating: 1, count: 20_000)
                // Eight writers put until the quota refuses them, each remembering what was acknowledged.
                let acknowledged = try await withThrowingTaskGroup(of: [(String, Int64)].self) { group in
                    for writer in 0..<8 {
                        group.addTask {
                            var mine: [(String, Int64)] = []
                            for index in 0..<400 {
                                var put = Etcdserverpb_PutRequest()
                                put.key = Data("w\(writer)-\(index)".utf8)
                                put.value = value
                                do {
                                    let response = try await client.kv.put(put)
                                    mine.append(("w\(writer)-\(index)", response.header.revision))
                                } catch let error as RPCError {
                                    #expect(error.code == .resourceExhausted, "\(error)")
                                    #expect(error.message == "etcdserver: mvcc: database space exceeded")
                                    break
                                }
                            }
                            return mine
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(acknowledged.count > 50, "\(acknowledged.count) puts acknowledged before NOSPACE")
                var list = Etcdserverpb_AlarmRequest()
                list.action = .get
                #expect(try await client.maintenance.alarm(list).alarms.map(\.alarm) == [.nospace])
                // Every acknowledged put is stored, at the revision it was acknowledged with.
                var range = Etcdserverpb_RangeRequest()
                range.key = Data("w".utf8)
                range.rangeEnd = Data("x".utf8)
                range.keysOnly = true
                let stored = try await client.kv.range(range)
                let byKey = Dictionary(uniqueKeysWithValues: stored.kvs.map { (String(decoding: $0.key, as: UTF8.self), $0.modRevision) })
                let missing = acknowledged.filter { byKey[$0.0] != $0.1 }
                #expect(missing.isEmpty, "\(missing.count) of \(acknowledged.count) acknowledged puts missing")
                // Recovery: delete, compact, defragment, disarm; then writes succeed again.
                var delete = Etcdserverpb_DeleteRangeRequest()
                delete.key = range.key
                delete.rangeEnd = range.rangeEnd
                let deleted = try await client.kv.deleteRange(delete)
                var compaction = Etcdserverpb_CompactionRequest()
                compaction.revision = deleted.header.revision
                compaction.physical = true
                _ = try await client.kv.compact(compaction)
                _ = try await client.maintenance.defragment(Etcdserverpb_DefragmentRequest())
                var disarm = Etcdserverpb_AlarmRequest()
                disarm.action = .deactivate
                disarm.alarm = .nospace
                disarm.memberID = try await client.maintenance.status(Etcdserverpb_StatusRequest()).header.memberID
                #expect(try await client.maintenance.alarm(disarm).alarms.count == 1)
                var put = Etcdserverpb_PutRequest()
                put.key = Data("after".utf8)
                put.value = value
                _ = try await client.kv.put(put)
                #expect(try await client.maintenance.alarm(list).alarms.isEmpty)
            }
        }
    }
}
