import EtcdAPI
import EtcdTestSupport
import Foundation
import Testing

/// etcdctl's lease commands side by side. Leases that etcdctl grants get server-chosen IDs, which
/// differ between the two servers (they derive from the member ID and the start time), so those
/// steps are recorded with the ID masked; the rest use IDs granted over gRPC, the same on both.
@Suite("Leases, compatibility with real etcd")
struct LeaseCompatibilityTests {
    /// etcdctl's output with 16-hex-digit lease IDs (and their decimal JSON form) replaced.
    static func maskingLeaseIDs(_ text: String) -> String {
        var masked = text.replacingOccurrences(of: #"\b[0-9a-f]{16}\b"#, with: "<lease>", options: .regularExpression)
        masked = masked.replacingOccurrences(of: #""ID":[0-9]+"#, with: #""ID":<lease>"#, options: .regularExpression)
        return masked
    }

    /// Runs etcdctl and records its output with the list in `attached keys([...])` sorted: etcd
    /// keeps a lease's keys in a Go map, so it lists them in a different order from run to run.
    static func etcdctlSortingKeys(_ side: CompatibilitySession, _ arguments: String...) async throws {
        let result = try await side.etcdctl(arguments, record: false)
        var output = result.standardOutput
        if let open = output.range(of: "attached keys(["), let close = output.range(of: "])", range: open.upperBound..<output.endIndex) {
            let keys = output[open.upperBound..<close.lowerBound].split(separator: " ").sorted()
            output.replaceSubrange(open.upperBound..<close.lowerBound, with: keys.joined(separator: " "))
        }
        side.record(
            "etcdctl " + arguments.joined(separator: " ") + " (keys sorted)",
            .text("exit \(result.exit)\n" + output),
            errorOutput: CompatibilitySession.normalizeStandardError(result.standardError, endpoint: side.server.clientEndpoint)
        )
    }

    /// Runs etcdctl and records its output with lease IDs masked and the header removed.
    @discardableResult
    static func etcdctlMasked(_ side: CompatibilitySession, _ arguments: String...) async throws -> EtcdctlResult {
        try await etcdctlMasked(side, arguments)
    }

    @discardableResult
    static func etcdctlMasked(_ side: CompatibilitySession, _ arguments: [String]) async throws -> EtcdctlResult {
        let result = try await side.etcdctl(arguments, record: false)
        var output = maskingLeaseIDs(result.standardOutput)
        output = output.replacingOccurrences(
            of: #""cluster_id":[0-9]+,"member_id":[0-9]+,"#, with: "", options: .regularExpression)
        side.record(
            "etcdctl " + arguments.joined(separator: " ") + " (lease IDs masked)",
            .text("exit \(result.exit)\n" + output),
            errorOutput: CompatibilitySession.normalizeStandardError(
                maskingLeaseIDs(result.standardError), endpoint: side.server.clientEndpoint)
        )
        return result
    }

    @Test("lease grant, timetolive --keys, list, keep-alive --once, revoke and their errors")
    func etcdctlLeases() async throws {
        try await expectCompatible(
            "etcdctl lease commands",
            referenceMentions: [
                "etcdserver: requested lease not found", "etcdserver: too large lease TTL", "already expired",
                "granted with TTL(2s)",
            ]
        ) { side in
            try await Self.etcdctlMasked(side, "lease", "grant", "1")
            try await Self.etcdctlMasked(side, "lease", "grant", "600", "-w", "json")
            try await Self.etcdctlMasked(side, "lease", "grant", "10000000000")
            try await side.server.withGRPCClient { etcd in
                await LeaseKVCompatibilityTests.grant(side, etcd, id: 0xabc, ttl: 600)
            }
            try await side.etcdctl("put", "a", "1", "--lease=abc")
            try await side.etcdctl("put", "b", "2", "--lease=abc")
            // Remaining TTL counts down in real time; a step finishing within a second is the norm.
            try await Self.etcdctlSortingKeys(side, "lease", "timetolive", "abc", "--keys")
            try await Self.etcdctlMasked(side, "lease", "timetolive", "abc", "-w", "json")
            try await side.etcdctl("lease", "keep-alive", "--once", "abc")
            try await side.etcdctl("lease", "keep-alive", "--once", "abd")
            try await side.etcdctl("lease", "timetolive", "abd")
            try await Self.etcdctlMasked(side, "lease", "timetolive", "abd", "-w", "json")
            try await side.etcdctl("lease", "revoke", "abd")
            try await side.etcdctl("put", "c", "3", "--lease=abd")
            try await side.recordRevision()
            try await side.etcdctl("lease", "revoke", "abc")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await side.etcdctl("lease", "timetolive", "abc")
        }
    }
}
