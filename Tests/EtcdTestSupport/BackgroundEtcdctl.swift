import Foundation
import Synchronization

/// One etcdctl that runs until it is stopped, such as `etcdctl watch`, started in the background
/// against one server while the test writes through other clients.
///
/// Its standard output goes to a file that ``waitForOutput(_:timeout:until:)`` polls, so a test
/// waits for what it expects to see instead of sleeping. Started with `interactive`, it reads
/// standard input from a pipe that stays open while it runs and ``send(_:)`` writes lines to
/// (`etcdctl watch -i` reads one command per line).
///
/// Use it through ``Etcdctl/withBackground(_:interactive:_:)`` or
/// ``CompatibilitySession/etcdctlInBackground(_:interactive:_:)``, which stop it however the scope
/// ends.
public final class BackgroundEtcdctl: Sendable {
    /// What starts every note of a wait that ran out of time, in a recorded step's exit; the
    /// compatibility checks look for it in real etcd's transcript, where it means that the
    /// scenario waits for something that real etcd does not do.
    public static let missedWaitMarker = "missed: "

    /// The arguments after `--endpoints`.
    public let arguments: [String]
    private let child: ChildProcess
    private let scratch: TemporaryDirectory
    private let input: FileHandle?
    private let state = Mutex(State())

    private struct State {
        /// The lines written to standard input, in order.
        var sent: [String] = []
        /// One note per wait that ran out of time, for the record.
        var missedWaits: [String] = []
        var stopped: EtcdctlResult?
    }

    init(etcdctl: Etcdctl, arguments: [String], interactive: Bool) throws {
        let scratch = try TemporaryDirectory(prefix: "etcdctl-background")
        let pipe = interactive ? Pipe() : nil
        do {
            child = try ChildProcess(
                executable: etcdctl.executable,
                arguments: ["--endpoints=\(etcdctl.endpoints)"] + arguments,
                environment: Etcdctl.environment(),
                standardOutput: scratch.appending("stdout"),
                standardError: scratch.appending("stderr"),
                standardInputPipe: pipe
            )
        } catch {
            scratch.remove()
            throw error
        }
        self.arguments = arguments
        self.scratch = scratch
        self.input = pipe?.fileHandleForWriting
    }

    /// What it has printed on standard output so far.
    public var standardOutput: String { read("stdout") }

    /// What it has printed on standard error so far.
    public var standardError: String { read("stderr") }

    /// The complete lines of standard output so far (a line still being written is left out).
    public var outputLines: [String] {
        var lines = standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // The text after the last newline is either empty or a line not finished yet.
        lines.removeLast()
        return lines
    }

    /// The lines written to standard input so far.
    public var sentLines: [String] { state.withLock { $0.sent } }

    /// Whether the process has exited by itself (before ``stop()``).
    public var hasExited: Bool { child.exitStatus != nil }

    /// Writes `line` and a newline to standard input; only for a background etcdctl started with
    /// `interactive`.
    public func send(_ line: String) throws {
        guard let input else {
            preconditionFailure(
                "etcdctl \(arguments) was not started interactive; it has no standard input to write to")
        }
        state.withLock { $0.sent.append(line) }
        try input.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Waits until `condition` holds for the complete output lines, the process exits, or
    /// `timeout` passes. A wait that runs out of time is noted (with `expectation`) in the exit
    /// that ``stop()`` reports, so that a comparison shows which expectation was not met.
    ///
    /// - Returns: whether the condition held.
    @discardableResult
    public func waitForOutput(
        _ expectation: String,
        timeout: Duration = .seconds(15),
        until condition: ([String]) -> Bool
    ) async -> Bool {
        let met = await poll(timeout: timeout, interval: .milliseconds(20)) {
            condition(outputLines) || hasExited
        }
        // It may have printed what was awaited and then exited.
        if condition(outputLines) { return true }
        let note =
            BackgroundEtcdctl.missedWaitMarker
            + (met ? "exited before printing \(expectation)" : "\(timeout) passed without \(expectation)")
        state.withLock { $0.missedWaits.append(note) }
        return false
    }

    /// Waits until `condition` holds for standard error so far, the process exits, or `timeout`
    /// passes; a wait that runs out of time is noted like one of ``waitForOutput(_:timeout:until:)``.
    @discardableResult
    public func waitForErrorOutput(
        _ expectation: String,
        timeout: Duration = .seconds(15),
        until condition: (String) -> Bool
    ) async -> Bool {
        let met = await poll(timeout: timeout, interval: .milliseconds(20)) {
            condition(standardError) || hasExited
        }
        if condition(standardError) { return true }
        let note =
            BackgroundEtcdctl.missedWaitMarker
            + (met ? "exited before printing \(expectation)" : "\(timeout) passed without \(expectation)")
        state.withLock { $0.missedWaits.append(note) }
        return false
    }

    /// Waits until some complete line of output equals `line`; see ``waitForOutput(_:timeout:until:)``.
    @discardableResult
    public func waitForLine(_ line: String, timeout: Duration = .seconds(15)) async -> Bool {
        await waitForOutput("a line \(line.debugDescription)", timeout: timeout) { $0.contains(line) }
    }

    /// Waits until the process exits by itself, up to `timeout`; see ``waitForOutput(_:timeout:until:)``.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(15)) async -> Bool {
        if await child.waitForExit(timeout: timeout) != nil { return true }
        state.withLock {
            $0.missedWaits.append(
                BackgroundEtcdctl.missedWaitMarker + "\(timeout) passed without the process exiting by itself")
        }
        return false
    }

    /// Sends `signal` to the process if it still runs: SIGSTOP makes a client that stops reading,
    /// SIGKILL one that disappears without closing its streams.
    public func send(signal: Int32) {
        child.send(signal: signal)
    }

    /// Stops the process (SIGTERM, then SIGKILL) if it still runs and returns what it printed. The
    /// exit is reported as it happened, followed by a note for each wait that ran out of time.
    /// Calling it again returns the same result.
    @discardableResult
    public func stop() async -> EtcdctlResult {
        if let stopped = state.withLock({ $0.stopped }) { return stopped }
        let exit = await child.terminate(gracePeriod: .seconds(5))
        try? input?.close()
        let missed = state.withLock { $0.missedWaits }
        let result = EtcdctlResult(
            arguments: arguments,
            exit: exit,
            timedOut: !missed.isEmpty,
            standardOutput: standardOutput,
            standardError: standardError
        )
        scratch.remove()
        state.withLock { $0.stopped = result }
        return result
    }

    /// The notes of the waits that ran out of time.
    public var missedWaits: [String] { state.withLock { $0.missedWaits } }

    private func read(_ name: String) -> String {
        if let stopped = state.withLock({ $0.stopped }) {
            return name == "stdout" ? stopped.standardOutput : stopped.standardError
        }
        return String(decoding: (try? Data(contentsOf: scratch.appending(name))) ?? Data(), as: UTF8.self)
    }
}

extension Etcdctl {
    /// Starts `etcdctl <arguments>` in the background. The caller must ``BackgroundEtcdctl/stop()``
    /// it on every path; prefer ``withBackground(_:interactive:_:)`` where one scope fits.
    public func startInBackground(_ arguments: [String], interactive: Bool = false) throws -> BackgroundEtcdctl {
        try BackgroundEtcdctl(etcdctl: self, arguments: arguments, interactive: interactive)
    }

    /// Starts `etcdctl <arguments>` in the background, runs `body` with it, then stops it and
    /// returns what it printed along with `body`'s result, whether `body` returns or throws.
    ///
    /// - Parameter interactive: give it a standard input that stays open for
    ///   ``BackgroundEtcdctl/send(_:)``; otherwise standard input is /dev/null.
    public func withBackground<Result>(
        _ arguments: [String],
        interactive: Bool = false,
        _ body: (BackgroundEtcdctl) async throws -> Result
    ) async throws -> (Result, EtcdctlResult) {
        let background = try BackgroundEtcdctl(etcdctl: self, arguments: arguments, interactive: interactive)
        let result: Result
        do {
            result = try await body(background)
        } catch {
            await background.stop()
            throw error
        }
        return (result, await background.stop())
    }
}

extension CompatibilitySession {
    /// Runs `etcdctl <arguments>` in the background on this side's server during `body`, then
    /// stops it and records one step: its exit (with a note for every wait that ran out of time),
    /// its standard output (lines of JSON, as `-w json` prints one response per line, become a
    /// normalized JSON array) and its normalized standard error. An interactive run's label lists
    /// the lines written to its standard input.
    ///
    /// Steps that `body` records come before this one. The step is recorded even when `body`
    /// throws.
    public func etcdctlInBackground(
        _ arguments: [String],
        interactive: Bool = false,
        _ body: (BackgroundEtcdctl) async throws -> Void
    ) async throws {
        let background = try BackgroundEtcdctl(etcdctl: server.etcdctl, arguments: arguments, interactive: interactive)
        var failure: (any Error)?
        do {
            try await body(background)
        } catch {
            failure = error
        }
        let result = await background.stop()
        var label = "etcdctl " + arguments.map(Self.shellQuoted).joined(separator: " ") + " (in the background)"
        if interactive { label += " <<< " + background.sentLines.map(\.debugDescription).joined(separator: ", ") }
        let exit = ([result.exit.description] + background.missedWaits).joined(separator: "; ")
        record(
            TranscriptEntry(
                label: label,
                exit: exit,
                output: Self.observation(ofLines: result.standardOutput, endpoint: server.clientEndpoint),
                errorOutput: Self.normalizeStandardError(result.standardError, endpoint: server.clientEndpoint)
            )
        )
        if let failure { throw failure }
    }

    /// Output made of one JSON object per line (`etcdctl watch -w json`) as a normalized JSON array;
    /// any other output as ``observation(of:endpoint:)`` makes it.
    public static func observation(ofLines output: String, endpoint: String) -> Observation {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !lines.isEmpty, lines.allSatisfy({ $0.hasPrefix("{") }) else {
            return observation(of: output, endpoint: endpoint)
        }
        var values: [JSONValue] = []
        for line in lines {
            guard case .json(let value) = observation(of: line, endpoint: endpoint) else {
                return observation(of: output, endpoint: endpoint)
            }
            values.append(value)
        }
        return .json(.array(values))
    }
}
