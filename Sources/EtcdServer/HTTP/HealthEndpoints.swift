import EtcdAPI
import EtcdCommon
import EtcdLeanRPC
import EtcdReplica
import Foundation
import GRPCCore
import NIOHTTP1
import Prometheus

/// etcd 3.5's health endpoints.
///
/// - `/health`: JSON `{"health":"true","reason":""}`; unhealthy (503) when an alarm is raised
///   (unless named in `?exclude=`), when there is no leader (unless `?serializable=true`), or
///   when a read fails (linearizable unless `?serializable=true`). etcd 3.4 writes no `reason`.
/// - `/livez` (a serializable read) and `/readyz` (no CORRUPT alarm, serializable and
///   linearizable reads, not a learner): `ok`, with each check's line under `?verbose`; a check
///   can be left out with `?exclude=<name>` or run alone at `/livez/<name>`.
struct HealthEndpoints: Sendable {
    let kv: KVService
    let replica: ReplicaHandle
    let status: MemberStatusBoard
    let metrics: ServerMetrics?

    private struct Check: Sendable {
        let name: String
        let run: @Sendable (HealthEndpoints) async -> String?
    }

    private static let serializableRead = Check(name: "serializable_read") { await $0.readError(serializable: true) }
    private static let livezChecks = [serializableRead]
    private static let readyzChecks = [
        Check(name: "data_corruption") { endpoints in
            endpoints.alarms().contains { $0.alarm == .corrupt } ? "alarm activated: CORRUPT" : nil
        },
        serializableRead,
        Check(name: "linearizable_read") { await $0.readError(serializable: false) },
        Check(name: "non_learner") { $0.status.isLearner ? "not supported for learner" : nil },
    ]

    /// The answer for `request` if its path is a health endpoint, else nil.
    func respond(to request: HTTPRequest) async -> HTTPResponse? {
        switch request.path {
        case "/health": return await guardGET(request) { await health(request) }
        case "/livez": return await guardGET(request) { await run(Self.livezChecks, request) }
        case "/readyz": return await guardGET(request) { await run(Self.readyzChecks, request) }
        default:
            for (root, checks) in [("/livez/", Self.livezChecks), ("/readyz/", Self.readyzChecks)] {
                guard request.path.hasPrefix(root) else { continue }
                let name = request.path.dropFirst(root.count)
                guard let check = checks.first(where: { $0.name == name }) else { return nil }
                return await guardGET(request) { await run([check], request) }
            }
            return nil
        }
    }

    private func guardGET(_ request: HTTPRequest, _ answer: () async -> HTTPResponse) async -> HTTPResponse {
        request.method == .GET ? await answer() : .methodNotAllowed(allow: "GET")
    }

    private func health(_ request: HTTPRequest) async -> HTTPResponse {
        let excluded = Set(request.queryValues("exclude").filter { !$0.isEmpty })
        let serializable = request.queryValues("serializable").first == "true"
        var reason: String?
        if let alarm = alarms().first(where: { !excluded.contains(MaintenanceService.alarmName($0.alarm)) }) {
            switch alarm.alarm {
            case .nospace: reason = "ALARM NOSPACE"
            case .corrupt: reason = "ALARM CORRUPT"
            default: reason = "ALARM UNKNOWN"
            }
        } else if !serializable && status.leader == 0 {
            reason = "RAFT NO LEADER"
        } else if let error = await readError(serializable: serializable) {
            reason = "RANGE ERROR:" + error
        }
        let body = #"{"health":"# + jsonQuoted(reason == nil ? "true" : "false") + #","reason":"# + jsonQuoted(reason ?? "") + "}"
        guard reason != nil else {
            metrics?.healthSuccesses.increment()
            // Go's server sniffs the JSON as plain text, the type etcd's answer carries.
            return HTTPResponse(status: .ok, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(body.utf8))
        }
        metrics?.healthFailures.increment()
        return .goError(.serviceUnavailable, body)
    }

    private func run(_ checks: [Check], _ request: HTTPRequest) async -> HTTPResponse {
        let excluded = Set(request.queryValues("exclude"))
        var report = ""
        var healthy = true
        for check in checks where !excluded.contains(check.name) {
            if let failure = await check.run(self) {
                healthy = false
                report += "[-]\(check.name) failed: \(failure)\n"
            } else {
                report += "[+]\(check.name) ok\n"
            }
        }
        guard healthy else { return .goError(.serviceUnavailable, report) }
        let verbose = request.query.contains { $0.name == "verbose" }
        return HTTPResponse(
            status: .ok,
            headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
            body: Array(((verbose ? report : "") + "ok\n").utf8))
    }

    private func alarms() -> [Etcdserverpb_AlarmMember] {
        (try? replica.read { $0.alarms }) ?? []
    }

    /// What a one-key read says when it fails (etcd's health reads check the request path
    /// end to end), nil when it succeeds.
    private func readError(serializable: Bool) async -> String? {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data([0])
        range.keysOnly = true
        range.limit = 1
        range.serializable = serializable
        do {
            _ = try await ServiceCall.run(Etcdserverpb_KV.Method.Range.descriptor) { context in
                try await kv.range(request: range, context: context)
            }
            return nil
        } catch {
            let message = LeanServiceTable.status(of: error).message
            // With auth on, the health read has no user: refused, it still went through the
            // whole path (etcd counts these refusals as healthy too).
            if message == EtcdError.userEmpty.message || message == EtcdError.permissionDenied.message { return nil }
            return message
        }
    }
}
