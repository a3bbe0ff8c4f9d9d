import EtcdTestSupport
import Foundation
import Testing

/// Runs `body` on a fresh real etcd and a fresh swift-etcd and records a test issue for every step
/// whose exit status, normalized output or normalized error output differs.
///
/// Env `COMPAT_PRINT_TRANSCRIPTS=1` prints real etcd's transcript of every scenario.
///
/// - Parameters:
///   - referenceMentions: texts that real etcd must print somewhere in the scenario; a scenario
///     that expects an error checks here that the reference really produced it, so that a typo in
///     a scenario cannot pass unnoticed on both sides.
///   - knownIssue: given the report, the reason the candidate is known to differ (for instance a
///     service it does not implement yet), or `nil`. Differences are then recorded as a known
///     issue: the scenario still runs and prints them, without failing the suite.
func expectCompatible(
    _ name: String,
    options: EtcdOptions = EtcdOptions(),
    referenceMentions: [String] = [],
    knownIssue: (SideBySideReport) -> String? = { _ in nil },
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable (CompatibilitySession) async throws -> Void
) async throws {
    let report = try await SideBySide.run(name, options: options, body)
    if ProcessInfo.processInfo.environment["COMPAT_PRINT_TRANSCRIPTS"] == "1" {
        print("=== \(name) on \(report.reference.flavor)\n\(report.reference)")
    }
    for text in referenceMentions {
        #expect(
            report.referenceMentions(text),
            "real etcd never printed \(text.debugDescription), so the scenario does not test what it claims",
            sourceLocation: sourceLocation
        )
    }
    // A scenario that waits for output real etcd never produced does not test what it claims,
    // even when both sides agree (both waited in vain).
    for entry in report.reference.entries {
        guard let exit = entry.exit, exit.contains(BackgroundEtcdctl.missedWaitMarker) else { continue }
        Issue.record(
            "real etcd did not do what the scenario waits for in step \(entry.label.debugDescription): \(exit)",
            sourceLocation: sourceLocation
        )
    }
    guard !report.matches else { return }
    if let reason = knownIssue(report) {
        withKnownIssue(Comment(rawValue: reason)) {
            Issue.record(Comment(rawValue: "known issue: \(reason)\n\(report.description)"), sourceLocation: sourceLocation)
        }
    } else {
        Issue.record(Comment(rawValue: report.description), sourceLocation: sourceLocation)
    }
}

/// For scenarios that exist to exercise an RPC swift-etcd does not implement yet (each opts in
/// explicitly, so a service that stops being registered can never pass as "known"): their
/// differences are printed as a known issue, naming the missing RPCs.
func unimplementedRPC(_ report: SideBySideReport) -> String? {
    let missing = report.candidate.entries.filter {
        $0.errorOutput.contains("code = Unimplemented") || $0.errorOutput.hasPrefix("unimplemented:")
    }
    guard !missing.isEmpty else { return nil }
    let labels = Set(missing.map { $0.label.split(separator: " ").prefix(3).joined(separator: " ") }).sorted()
    return "swift-etcd answers Unimplemented to: " + labels.joined(separator: "; ")
}

extension CompatibilitySession {
    /// Records the current revision as etcdctl reports it for a read of a key nobody writes, which
    /// shows whether the previous step moved the revision.
    func recordRevision() async throws {
        try await etcdctl("get", "revision-probe", "-w", "json")
    }
}
