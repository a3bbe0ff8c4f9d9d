public import Foundation

/// Runs the installed etcdctl (API v3) against one server.
public struct Etcdctl: Sendable {
    /// The `--endpoints` value, e.g. `127.0.0.1:2379`.
    public var endpoints: String
    /// The etcdctl binary: env `ETCDCTL_BINARY`, else `/usr/bin/etcdctl`.
    public var executable: URL
    /// How long one invocation may run before it is killed.
    public var timeout: Duration
    /// Flags given to every invocation right after `--endpoints`, e.g. TLS's `--cacert`.
    public var globalArguments: [String]

    public init(endpoints: String, timeout: Duration = .seconds(20), globalArguments: [String] = []) {
        self.endpoints = endpoints
        self.globalArguments = globalArguments
        self.executable = URL(
            fileURLWithPath: ProcessInfo.processInfo.environment["ETCDCTL_BINARY"] ?? "/usr/bin/etcdctl"
        )
        self.timeout = timeout
    }

    /// Runs `etcdctl --endpoints=<endpoints> <arguments>`, feeding `standardInput` if given.
    ///
    /// A run that exceeds ``timeout`` is killed and reported with ``EtcdctlResult/timedOut`` set,
    /// rather than thrown, so that a hanging server shows up in a comparison like any other
    /// difference.
    public func run(_ arguments: [String], standardInput: String? = nil) async throws -> EtcdctlResult {
        try await withTemporaryDirectory(prefix: "etcdctl") { scratch in
            let output = scratch.appending("stdout")
            let error = scratch.appending("stderr")
            var input: URL?
            if let standardInput {
                let url = scratch.appending("stdin")
                try Data(standardInput.utf8).write(to: url)
                input = url
            }
            let child = try ChildProcess(
                executable: executable,
                arguments: ["--endpoints=\(endpoints)"] + globalArguments + arguments,
                environment: Self.environment(),
                standardOutput: output,
                standardError: error,
                standardInput: input
            )
            var timedOut = false
            var exit = await child.waitForExit(timeout: timeout)
            if exit == nil {
                timedOut = true
                exit = await child.kill()
            }
            return EtcdctlResult(
                arguments: arguments,
                exit: exit ?? ProcessExit(status: -1, signaled: false),
                timedOut: timedOut,
                standardOutput: String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self),
                standardError: String(decoding: (try? Data(contentsOf: error)) ?? Data(), as: UTF8.self)
            )
        }
    }

    /// Runs `etcdctl <arguments>`.
    public func run(_ arguments: String..., standardInput: String? = nil) async throws -> EtcdctlResult {
        try await run(arguments, standardInput: standardInput)
    }

    /// The environment etcdctl runs with: API v3, and none of the caller's other `ETCDCTL_*`
    /// settings, which would change what it sends.
    static func environment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["ETCDCTL_API"] = "3"
        for name in environment.keys where name.hasPrefix("ETCDCTL_") && name != "ETCDCTL_API" {
            environment[name] = nil
        }
        return environment
    }
}

/// What one etcdctl invocation did.
public struct EtcdctlResult: Sendable, CustomStringConvertible {
    /// The arguments after `--endpoints`.
    public var arguments: [String]
    /// How the process ended.
    public var exit: ProcessExit
    /// Whether it was killed for exceeding its time limit.
    public var timedOut: Bool
    public var standardOutput: String
    public var standardError: String

    /// The exit code, or -1 when a signal ended it.
    public var exitCode: Int32 { exit.signaled ? -1 : exit.status }

    /// Whether etcdctl exited with code 0.
    public var succeeded: Bool { !exit.signaled && exit.status == 0 }

    public var description: String {
        var text = "etcdctl \(arguments.joined(separator: " ")) -> \(exit)"
        if timedOut { text += " (timed out)" }
        text += "\n  stdout: \(standardOutput.debugDescription)\n  stderr: \(standardError.debugDescription)"
        return text
    }
}
