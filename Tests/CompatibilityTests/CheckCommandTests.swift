import EtcdTestSupport
import Foundation
import Testing

/// `etcdctl check datascale`: puts 10,000 keys of 1 KiB with 50 clients and reports the server's
/// memory growth, read from `process_resident_memory_bytes` on its `/metrics` page; with
/// `--auto-compact --auto-defrag` it then compacts and defragments. (`check perf` is a timed
/// pass/fail, so it is a benchmark here, see BENCHMARKS.md, not a test.)
@Suite("etcdctl check commands")
struct CheckCommandTests {
    @Test("check datascale --load=s passes, reading the memory figure from /metrics, and cleans up after itself")
    func datascale() async throws {
        try await expectCompatible("check datascale", referenceMentions: ["PASS: Approximate system memory used"]) { side in
            let result = try await side.etcdctl(
                ["check", "datascale", "--load=s", "--auto-compact", "--auto-defrag"], record: false)
            // The figure itself differs between servers; its presence and the verdict must not.
            let lines = result.standardOutput.split(separator: "\n").map(String.init).filter {
                $0.hasPrefix("Start data scale check") || $0.hasPrefix("PASS") || $0.hasPrefix("FAIL")
            }.map { $0.replacingOccurrences(of: #"[0-9]+\.[0-9]+ MB"#, with: "<n> MB", options: .regularExpression) }
            side.record("etcdctl check datascale --load=s --auto-compact --auto-defrag", .text("exit \(result.exit)\n" + lines.joined(separator: "\n")))
            try await side.etcdctl("get", "/etcdctl-check-datascale/", "--prefix", "--keys-only", "--limit=1")
        }
    }
}
