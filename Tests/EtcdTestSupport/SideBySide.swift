import Foundation
import Synchronization

/// What a step printed, normalized so that two servers can be compared.
public enum Observation: Hashable, Sendable {
    /// Output that is not JSON, compared as text.
    case text(String)
    /// JSON output, compared structurally after ``EtcdJSON/normalize(_:)``.
    case json(JSONValue)
}

/// One step of a scenario as one server answered it.
public struct TranscriptEntry: Hashable, Sendable {
    /// What was run, e.g. `etcdctl put k v -w json`. Both sides must run the same steps.
    public var label: String
    /// How the step ended, e.g. `exit code 1`; `nil` for steps that are not processes.
    public var exit: String?
    /// Standard output (or the step's result), normalized.
    public var output: Observation
    /// Standard error, normalized (see ``CompatibilitySession/normalizeStandardError(_:endpoint:)``).
    public var errorOutput: String

    public init(label: String, exit: String? = nil, output: Observation, errorOutput: String = "") {
        self.label = label
        self.exit = exit
        self.output = output
        self.errorOutput = errorOutput
    }
}

/// The steps of one scenario on one server.
public struct Transcript: Sendable, CustomStringConvertible {
    public var flavor: ServerFlavor
    public var entries: [TranscriptEntry]

    public init(flavor: ServerFlavor, entries: [TranscriptEntry]) {
        self.flavor = flavor
        self.entries = entries
    }

    /// Every step with its exit, output and error output, for reading a scenario's behaviour.
    public var description: String {
        entries.enumerated().map { index, entry in
            "step \(index + 1): \(entry.label)\n" + SideBySideReport.render(entry, indent: "    ")
        }.joined(separator: "\n")
    }
}

/// The handle a scenario uses on one side: it runs steps against that side's server and records
/// what they print.
///
/// A scenario body runs once per side, so it must do the same steps in the same order on both.
public final class CompatibilitySession: Sendable {
    /// The server of this side.
    public let server: EtcdProcess
    private let entries = Mutex<[TranscriptEntry]>([])

    public init(server: EtcdProcess) {
        self.server = server
    }

    /// Which implementation this side runs.
    public var flavor: ServerFlavor { server.flavor }

    /// The steps recorded so far.
    public var transcript: Transcript { Transcript(flavor: flavor, entries: entries.withLock { $0 }) }

    /// Runs etcdctl against this side's server and records its exit, standard output (JSON is
    /// parsed and normalized) and standard error (normalized).
    @discardableResult
    public func etcdctl(_ arguments: [String], standardInput: String? = nil, record: Bool = true) async throws
        -> EtcdctlResult
    {
        let result = try await server.etcdctl.run(arguments, standardInput: standardInput)
        if record {
            var label = "etcdctl " + arguments.map(Self.shellQuoted).joined(separator: " ")
            if let standardInput {
                let shown = standardInput.utf8.count > 400
                    ? "\(standardInput.prefix(300))…(\(standardInput.utf8.count) bytes)" : standardInput
                label += " <<< " + shown.debugDescription
            }
            self.record(
                TranscriptEntry(
                    label: label,
                    exit: result.timedOut ? "timed out" : result.exit.description,
                    output: Self.observation(of: result.standardOutput, endpoint: server.clientEndpoint),
                    errorOutput: Self.normalizeStandardError(result.standardError, endpoint: server.clientEndpoint)
                )
            )
        }
        return result
    }

    /// Runs etcdctl with variadic arguments; see ``etcdctl(_:standardInput:record:)``.
    @discardableResult
    public func etcdctl(_ arguments: String..., standardInput: String? = nil) async throws -> EtcdctlResult {
        try await etcdctl(arguments, standardInput: standardInput)
    }

    /// Records an observation made some other way (a raw gRPC response, a derived value).
    public func record(_ label: String, _ output: Observation, errorOutput: String = "") {
        record(TranscriptEntry(label: label, output: output, errorOutput: errorOutput))
    }

    /// Records a prepared entry.
    public func record(_ entry: TranscriptEntry) {
        entries.withLock { $0.append(entry) }
    }

    // MARK: - Normalization

    /// Output as JSON when it parses as a JSON object or array, else as text; the endpoint
    /// address is replaced by `<endpoint>` in either.
    public static func observation(of output: String, endpoint: String) -> Observation {
        let trimmed = output.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("["), let value = try? JSONValue(parsing: trimmed) {
            return .json(EtcdJSON.normalize(replacingEndpoint(in: value, endpoint: endpoint)))
        }
        return .text(normalizeFieldsFormat(output).replacingOccurrences(of: endpoint, with: "<endpoint>"))
    }

    /// `-w fields` prints the header as lines such as `"ClusterID" : 14841639068965178418`; the
    /// same server-identity fields as in JSON are replaced by `<normalized>`.
    public static func normalizeFieldsFormat(_ output: String) -> String {
        let identityLabels = ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "]
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard let label = identityLabels.first(where: { line.hasPrefix($0) }) else { return String(line) }
            return label + "<normalized>"
        }
        return lines.joined(separator: "\n")
    }

    /// etcdctl's standard error with what varies from run to run taken out.
    ///
    /// clientv3 logs a JSON line (`{"level":"warn","ts":...,"target":"endpoint://client-<uuid>/..."}`)
    /// before most errors; such a line is reduced to its level, message and error, which are what
    /// a server influences. The endpoint address becomes `<endpoint>`. Other lines stay as they are.
    public static func normalizeStandardError(_ text: String, endpoint: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("{\"level\""), let value = try? JSONValue(parsing: trimmed) else {
                return String(line)
            }
            let level = value["level"]?.stringValue ?? "?"
            let message = value["msg"]?.stringValue ?? ""
            let error = value["error"]?.stringValue.map { " error=\($0.debugDescription)" } ?? ""
            return "<log \(level)> \(message)\(error)"
        }
        return lines.joined(separator: "\n").replacingOccurrences(of: endpoint, with: "<endpoint>")
    }

    private static func replacingEndpoint(in value: JSONValue, endpoint: String) -> JSONValue {
        switch value {
        case .string(let text): return .string(text.replacingOccurrences(of: endpoint, with: "<endpoint>"))
        case .array(let elements): return .array(elements.map { replacingEndpoint(in: $0, endpoint: endpoint) })
        case .object(let members): return .object(members.mapValues { replacingEndpoint(in: $0, endpoint: endpoint) })
        default: return value
        }
    }

    static func shellQuoted(_ argument: String) -> String {
        // Long arguments (big values) are shortened; the label is for people, and both sides
        // shorten them the same way.
        if argument.utf8.count > 60 { return "'\(argument.prefix(20))…(\(argument.utf8.count) bytes)'" }
        let plain = argument.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || "-_=./:,+%@".unicodeScalars.contains($0)
        }
        if plain && !argument.isEmpty { return argument }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// Runs one scenario on a reference server (real etcd) and a candidate server (swift-etcd), each
/// fresh, and compares what they printed.
public enum SideBySide {
    /// Starts one fresh server per side with the same `options`, runs `body` on both at the same
    /// time, stops both, and compares the transcripts step by step.
    ///
    /// A body that throws on one side is recorded as a final step (`scenario threw`), so the
    /// report still shows everything up to it. A server that does not start throws, as does a
    /// missing binary, before any server starts.
    public static func run(
        _ name: String,
        options: EtcdOptions = EtcdOptions(),
        reference: ServerFlavor = .realEtcd,
        candidate: ServerFlavor = .candidate,
        _ body: @escaping @Sendable (CompatibilitySession) async throws -> Void
    ) async throws -> SideBySideReport {
        // Fail fast, and with the clearest message, when a binary is missing.
        _ = try reference.executable()
        _ = try candidate.executable()

        async let referenceTranscript = transcript(of: body, on: reference, options: options)
        async let candidateTranscript = transcript(of: body, on: candidate, options: options)
        let transcripts = try await (referenceTranscript, candidateTranscript)
        return SideBySideReport(name: name, reference: transcripts.0, candidate: transcripts.1)
    }

    private static func transcript(
        of body: @Sendable (CompatibilitySession) async throws -> Void,
        on flavor: ServerFlavor,
        options: EtcdOptions
    ) async throws -> Transcript {
        try await withEtcd(flavor, options: options) { server in
            let session = CompatibilitySession(server: server)
            do {
                try await body(session)
            } catch {
                session.record("scenario threw", .text(String(describing: error)))
            }
            return session.transcript
        }
    }
}

/// The comparison of one scenario's two transcripts.
public struct SideBySideReport: Sendable, CustomStringConvertible {
    public var name: String
    public var reference: Transcript
    public var candidate: Transcript

    public init(name: String, reference: Transcript, candidate: Transcript) {
        self.name = name
        self.reference = reference
        self.candidate = candidate
    }

    /// Human-readable descriptions of each step that differs; empty when the servers agree.
    public var differences: [String] {
        var found: [String] = []
        let referenceName = reference.flavor == candidate.flavor ? "\(reference.flavor) (A)" : "\(reference.flavor)"
        let candidateName = reference.flavor == candidate.flavor ? "\(candidate.flavor) (B)" : "\(candidate.flavor)"
        for index in 0..<max(reference.entries.count, candidate.entries.count) {
            guard index < reference.entries.count, index < candidate.entries.count else {
                let (who, entry) =
                    index < reference.entries.count
                    ? (referenceName, reference.entries[index]) : (candidateName, candidate.entries[index])
                found.append("step \(index + 1): only \(who) ran it: \(entry.label)\n\(Self.render(entry, indent: "    "))")
                continue
            }
            let left = reference.entries[index]
            let right = candidate.entries[index]
            guard left != right else { continue }
            var lines = ["step \(index + 1): \(left.label)"]
            if left.label != right.label {
                lines.append("  labels differ (the scenario is not deterministic): \(right.label)")
            }
            if left.exit != right.exit {
                lines.append("  exit: \(referenceName) \(left.exit ?? "-"), \(candidateName) \(right.exit ?? "-")")
            }
            if left.output != right.output {
                if case .json(let l) = left.output, case .json(let r) = right.output {
                    lines.append("  stdout JSON differs at:")
                    for path in EtcdJSON.differences(
                        reference: l,
                        candidate: r,
                        referenceName: referenceName,
                        candidateName: candidateName
                    ) {
                        lines.append("    " + path)
                    }
                }
                lines.append("  stdout of \(referenceName):\n\(Self.render(left.output, indent: "    "))")
                lines.append("  stdout of \(candidateName):\n\(Self.render(right.output, indent: "    "))")
            }
            if left.errorOutput != right.errorOutput {
                lines.append("  stderr of \(referenceName): \(left.errorOutput.debugDescription)")
                lines.append("  stderr of \(candidateName): \(right.errorOutput.debugDescription)")
            }
            found.append(lines.joined(separator: "\n"))
        }
        return found
    }

    /// Whether every step matched.
    public var matches: Bool { differences.isEmpty }

    /// Whether the reference printed `text` in any step's output or error output; scenarios use
    /// it to check that they exercised what they claim (e.g. that real etcd did reject a request).
    public func referenceMentions(_ text: String) -> Bool {
        reference.entries.contains { entry in
            entry.errorOutput.contains(text) || Self.render(entry.output, indent: "").contains(text)
        }
    }

    public var description: String {
        let differences = self.differences
        if differences.isEmpty {
            return "\(name): \(reference.entries.count) steps, \(reference.flavor) and \(candidate.flavor) agree"
        }
        return "\(name): \(differences.count) of \(max(reference.entries.count, candidate.entries.count)) steps differ "
            + "between \(reference.flavor) and \(candidate.flavor)\n\n" + differences.joined(separator: "\n\n")
    }

    static func render(_ entry: TranscriptEntry, indent: String) -> String {
        "\(indent)exit: \(entry.exit ?? "-")\n\(render(entry.output, indent: indent))\n\(indent)stderr: "
            + entry.errorOutput.debugDescription
    }

    static func render(_ observation: Observation, indent: String) -> String {
        let text: String
        switch observation {
        case .text(let output): text = output.debugDescription
        case .json(let value): text = EtcdJSON.render(value)
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { indent + $0 }.joined(separator: "\n")
    }
}
