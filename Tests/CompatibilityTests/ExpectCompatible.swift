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
///   - knownDifference: given one step as each side ran it, the reason the candidate is known to
///     differ in that step (for instance an RPC it does not implement yet), or `nil`. Each
///     differing step must be excused on its own: an excused step is recorded as a known issue,
///     any other difference (and any step only one side ran) fails the test as usual, so a known
///     gap in one step can never hide a regression in another.
func expectCompatible(
    _ name: String,
    options: EtcdOptions = EtcdOptions(),
    referenceMentions: [String] = [],
    knownDifference: (_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? = { _, _ in nil },
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable (CompatibilitySession) async throws -> Void
) async throws {
    let report = try await SideBySide.run(name, options: options, body)
    expectCompatible(report, referenceMentions: referenceMentions, knownDifference: knownDifference, sourceLocation: sourceLocation)
}

/// Checks a report made some other way (for instance with options that differ per side) as
/// ``expectCompatible(_:options:referenceMentions:knownDifference:sourceLocation:_:)`` does.
func expectCompatible(
    _ report: SideBySideReport,
    referenceMentions: [String] = [],
    knownDifference: (_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? = { _, _ in nil },
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let name = report.name
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
    var unexcused = report.reference.entries.count != report.candidate.entries.count
    var reasons: [String] = []
    for (reference, candidate) in zip(report.reference.entries, report.candidate.entries) where reference != candidate {
        if reference.label == candidate.label, let reason = knownDifference(reference, candidate) {
            if !reasons.contains(reason) { reasons.append(reason) }
        } else {
            unexcused = true
        }
    }
    if unexcused {
        Issue.record(Comment(rawValue: report.description), sourceLocation: sourceLocation)
    } else {
        let reason = reasons.joined(separator: "; ")
        withKnownIssue(Comment(rawValue: reason)) {
            Issue.record(Comment(rawValue: "known issue: \(reason)\n\(report.description)"), sourceLocation: sourceLocation)
        }
    }
}

/// For steps that call an RPC swift-etcd does not implement yet: excused only when swift-etcd
/// answered that step with Unimplemented (each scenario opts in explicitly, so a service that
/// stops being registered can never pass as "known", and other steps must still agree).
func unimplementedRPC(_ reference: TranscriptEntry, _ candidate: TranscriptEntry) -> String? {
    guard candidate.errorOutput.contains("code = Unimplemented") || candidate.errorOutput.hasPrefix("unimplemented:")
    else { return nil }
    return "swift-etcd answers Unimplemented to: " + candidate.label.split(separator: " ").prefix(3).joined(separator: " ")
}

extension CompatibilitySession {
    /// Records the current revision as etcdctl reports it for a read of a key nobody writes, which
    /// shows whether the previous step moved the revision.
    func recordRevision() async throws {
        try await etcdctl("get", "revision-probe", "-w", "json")
    }
}
