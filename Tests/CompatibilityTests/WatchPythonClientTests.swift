import EtcdTestSupport
import Foundation
import Testing

/// python-etcd3's watch APIs (callbacks, prefix iterators, cancel_watch, start_revision, the
/// compaction error, watch_once) driven by `scripts/watch-client.py` against each server; the
/// script prints only what depends on the server's answers, and the outputs are compared.
///
/// Needs `python3` with python-etcd3 0.12 (`pip install etcd3`); without it the scenario fails
/// on both sides alike (the script's import error), so the test also checks that real etcd ran it
/// to the end.
@Suite("python-etcd3 watch compatibility with real etcd")
struct WatchPythonClientTests {
    /// The repository's root: this file is `Tests/CompatibilityTests/<name>.swift`.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("add_watch_callback, watch_prefix, cancel_watch, start_revision, compaction and watch_once")
    func pythonClient() async throws {
        try await expectCompatible("python-etcd3 watch", referenceMentions: ["done"]) { side in
            let script = Self.repositoryRoot.appendingPathComponent("scripts/watch-client.py")
            let result = try await runPython(script: script, arguments: [side.server.clientEndpoint])
            side.record(
                TranscriptEntry(
                    label: "python3 scripts/watch-client.py <endpoint>",
                    exit: result.timedOut ? "timed out" : result.exit.description,
                    output: .text(result.standardOutput),
                    errorOutput: result.standardError
                )
            )
        }
    }

    /// Runs `python3 <script> <arguments>` (env `PYTHON`, else `python3` on the path) with a
    /// deadline, killing it when it runs over.
    func runPython(script: URL, arguments: [String], timeout: Duration = .seconds(90)) async throws
        -> PythonResult
    {
        try await withTemporaryDirectory(prefix: "python-client") { scratch in
            let output = scratch.appending("stdout")
            let error = scratch.appending("stderr")
            var environment = ProcessInfo.processInfo.environment
            // python-etcd3 0.12's generated code needs the pure-Python protobuf runtime.
            environment["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
            let python = environment["PYTHON"] ?? "python3"
            let child = try ChildProcess(
                executable: URL(fileURLWithPath: "/usr/bin/env"),
                arguments: [python, script.path] + arguments,
                environment: environment,
                standardOutput: output,
                standardError: error
            )
            var timedOut = false
            var exit = await child.waitForExit(timeout: timeout)
            if exit == nil {
                timedOut = true
                exit = await child.kill()
            }
            func read(_ url: URL) -> String {
                String(decoding: (try? Data(contentsOf: url)) ?? Data(), as: UTF8.self)
            }
            return PythonResult(
                exit: exit ?? ProcessExit(status: -1, signaled: false),
                timedOut: timedOut,
                standardOutput: read(output),
                standardError: read(error)
            )
        }
    }
}

/// How one run of a Python script ended and what it printed.
struct PythonResult {
    var exit: ProcessExit
    var timedOut: Bool
    var standardOutput: String
    var standardError: String
}
