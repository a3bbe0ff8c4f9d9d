public import Foundation
import Synchronization

/// How to launch a single-member server under test.
public struct EtcdOptions: Sendable {
    /// The member name (`--name`).
    public var name: String
    /// Flags added after the standard ones, e.g. `["--max-txn-ops=4"]`.
    public var extraArguments: [String]
    /// `--log-level`.
    public var logLevel: String
    /// How long the server may take to answer `etcdctl endpoint health`.
    public var startTimeout: Duration
    /// How long the server may take to exit after SIGTERM before it gets SIGKILL.
    public var stopGracePeriod: Duration
    /// The schemes of the client URLs, all on the one client port: `["https"]` for TLS, both
    /// `http` and `https` to serve both on one port; the first is advertised.
    public var clientSchemes: [String]
    /// Flags every etcdctl run against the server gets (its start-up probe included), e.g.
    /// `--cacert` and a client certificate for a TLS server.
    public var etcdctlArguments: [String]

    public init(
        name: String = "member0",
        extraArguments: [String] = [],
        logLevel: String = "info",
        startTimeout: Duration = .seconds(30),
        stopGracePeriod: Duration = .seconds(10),
        clientSchemes: [String] = ["http"],
        etcdctlArguments: [String] = []
    ) {
        self.clientSchemes = clientSchemes
        self.etcdctlArguments = etcdctlArguments
        self.name = name
        self.extraArguments = extraArguments
        self.logLevel = logLevel
        self.startTimeout = startTimeout
        self.stopGracePeriod = stopGracePeriod
    }
}

/// One single-member etcd server (real etcd or swift-etcd) on 127.0.0.1, with its own data
/// directory, client port and peer port.
///
/// Start one with ``withEtcd(_:options:_:)``, which also stops it and removes its files however the
/// test ends. The server's standard output and error go to a log file whose tail failure messages
/// include (``logTail(lines:)``).
public final class EtcdProcess: Sendable {
    public let flavor: ServerFlavor
    public let options: EtcdOptions
    /// The port clients connect to.
    public let clientPort: Int
    /// The port peers connect to (unused by a single member, but etcd requires one).
    public let peerPort: Int
    /// The directory holding the data directory and the logs.
    public let directory: TemporaryDirectory
    private let executable: URL
    private let state: Mutex<State>

    private struct State {
        var child: ChildProcess?
        var launches: Int
    }

    /// `127.0.0.1:<clientPort>`, for `--endpoints`.
    public var clientEndpoint: String { "127.0.0.1:\(clientPort)" }
    /// The client URL, `http://127.0.0.1:<clientPort>` (`https://` for a TLS server).
    public var clientURL: String { "\(options.clientSchemes.first ?? "http")://\(clientEndpoint)" }
    /// The server's data directory (`--data-dir`); it survives ``stop()`` and ``restart()``.
    public var dataDirectory: URL { directory.appending("data") }
    /// An etcdctl pointed at this server.
    public var etcdctl: Etcdctl { Etcdctl(endpoints: clientEndpoint, globalArguments: options.etcdctlArguments) }
    /// The log file of the current (or last) launch.
    public var logFile: URL { Self.logFile(in: directory, launch: state.withLock { $0.launches }) }
    /// The running process, or `nil` after ``stop()``.
    public var child: ChildProcess? { state.withLock { $0.child } }

    private init(
        flavor: ServerFlavor,
        options: EtcdOptions,
        executable: URL,
        directory: TemporaryDirectory,
        ports: (client: Int, peer: Int),
        child: ChildProcess,
        launches: Int
    ) {
        self.flavor = flavor
        self.options = options
        self.executable = executable
        self.directory = directory
        self.clientPort = ports.client
        self.peerPort = ports.peer
        self.state = Mutex(State(child: child, launches: launches))
    }

    /// Starts a server with a fresh data directory inside `directory` and waits until it is healthy.
    ///
    /// Ports are chosen free just before the launch; if the server loses the race for one
    /// ("address already in use"), it is launched again on new ports, up to three times.
    public static func start(
        _ flavor: ServerFlavor,
        options: EtcdOptions = EtcdOptions(),
        in directory: TemporaryDirectory
    ) async throws -> EtcdProcess {
        let executable = try flavor.executable()
        let startupKey = StartupFailures.Key(flavor: flavor, arguments: options.extraArguments)
        if let earlier = StartupFailures.shared.failure(for: startupKey) {
            throw EtcdTestSupportError.serverDidNotStart(
                "not starting \(flavor) again: it failed to start earlier in this run with the same flags\n\(earlier)"
            )
        }
        var attempt = 0
        while true {
            attempt += 1
            let ports = (client: try LoopbackPort.allocate(), peer: try LoopbackPort.allocate())
            guard ports.client != ports.peer else { continue }
            do {
                let child = try await launch(
                    executable: executable,
                    flavor: flavor,
                    options: options,
                    directory: directory,
                    ports: ports,
                    launch: attempt
                )
                return EtcdProcess(
                    flavor: flavor,
                    options: options,
                    executable: executable,
                    directory: directory,
                    ports: ports,
                    child: child,
                    launches: attempt
                )
            } catch let error as EtcdTestSupportError {
                let log = Self.readLog(Self.logFile(in: directory, launch: attempt))
                guard attempt < 3, log.contains("address already in use") else {
                    StartupFailures.shared.record(error.description, for: startupKey)
                    throw error
                }
                try? FileManager.default.removeItem(at: directory.appending("data"))
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after the grace period) and returns how it ended;
    /// `nil` if it was not running. The data directory stays.
    @discardableResult
    public func stop() async -> ProcessExit? {
        guard let child = state.withLock({ state in defer { state.child = nil }; return state.child }) else {
            return nil
        }
        return await child.terminate(gracePeriod: options.stopGracePeriod)
    }

    /// Kills the server with SIGKILL, as a crash would; the data directory stays.
    @discardableResult
    public func kill() async -> ProcessExit? {
        guard let child = state.withLock({ state in defer { state.child = nil }; return state.child }) else {
            return nil
        }
        return await child.kill()
    }

    /// Starts the server again on the same data directory and ports, after ``stop()`` or ``kill()``,
    /// and waits until it is healthy.
    public func start() async throws {
        let launch = state.withLock { state -> Int? in
            guard state.child == nil else { return nil }
            state.launches += 1
            return state.launches
        }
        guard let launch else { return }
        let child = try await Self.launch(
            executable: executable,
            flavor: flavor,
            options: options,
            directory: directory,
            ports: (clientPort, peerPort),
            launch: launch
        )
        state.withLock { $0.child = child }
    }

    /// Stops the server with SIGTERM and starts it again on the same data directory.
    public func restart() async throws {
        await stop()
        try await start()
    }

    /// The last `lines` lines of the current launch's log, for failure messages.
    public func logTail(lines: Int = 40) -> String {
        let log = Self.readLog(logFile)
        let tail = log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines)
        return tail.joined(separator: "\n")
    }

    // MARK: - Launching

    private static func logFile(in directory: TemporaryDirectory, launch: Int) -> URL {
        directory.appending("server-\(launch).log")
    }

    private static func readLog(_ url: URL) -> String {
        String(decoding: (try? Data(contentsOf: url)) ?? Data(), as: UTF8.self)
    }

    private static func arguments(options: EtcdOptions, dataDirectory: URL, ports: (client: Int, peer: Int)) -> [String] {
        let clientURLs = options.clientSchemes.map { "\($0)://127.0.0.1:\(ports.client)" }
        let peerURL = "http://127.0.0.1:\(ports.peer)"
        return [
            "--name=\(options.name)",
            "--data-dir=\(dataDirectory.path)",
            "--listen-client-urls=\(clientURLs.joined(separator: ","))",
            "--advertise-client-urls=\(clientURLs[0])",
            "--listen-peer-urls=\(peerURL)",
            "--initial-advertise-peer-urls=\(peerURL)",
            "--initial-cluster=\(options.name)=\(peerURL)",
            "--log-level=\(options.logLevel)",
        ] + options.extraArguments
    }

    /// Launches the server and waits until `etcdctl endpoint health` succeeds; on failure the
    /// process is stopped and the error carries the log's tail.
    private static func launch(
        executable: URL,
        flavor: ServerFlavor,
        options: EtcdOptions,
        directory: TemporaryDirectory,
        ports: (client: Int, peer: Int),
        launch: Int
    ) async throws -> ChildProcess {
        let log = logFile(in: directory, launch: launch)
        let child = try ChildProcess(
            executable: executable,
            arguments: arguments(options: options, dataDirectory: directory.appending("data"), ports: ports),
            standardOutput: log,
            standardError: log
        )
        let healthy: Bool
        do {
            healthy = try await waitUntilHealthy(
                child: child, clientPort: ports.client, etcdctlArguments: options.etcdctlArguments, timeout: options.startTimeout)
        } catch {
            await child.terminate(gracePeriod: options.stopGracePeriod)
            throw error
        }
        guard healthy else {
            let exit = child.exitStatus
            await child.terminate(gracePeriod: options.stopGracePeriod)
            let tail = readLog(log).split(separator: "\n").suffix(40).joined(separator: "\n")
            let what = exit.map { "exited (\($0))" } ?? "did not become healthy within \(options.startTimeout)"
            throw EtcdTestSupportError.serverDidNotStart(
                "\(flavor) server \(what) on 127.0.0.1:\(ports.client)\n"
                    + "command: \(child.commandLine)\nlog tail (\(log.path)):\n\(tail)"
            )
        }
        return child
    }

    /// Polls until the port accepts connections and a linearizable read through etcdctl
    /// (`endpoint health`) succeeds; gives up early when the process exits.
    private static func waitUntilHealthy(
        child: ChildProcess, clientPort: Int, etcdctlArguments: [String], timeout: Duration
    ) async throws -> Bool {
        let etcdctl = Etcdctl(endpoints: "127.0.0.1:\(clientPort)", timeout: .seconds(5), globalArguments: etcdctlArguments)
        var exited = false
        let healthy = try await poll(timeout: timeout, interval: .milliseconds(50)) {
            if child.exitStatus != nil {
                exited = true
                return true
            }
            guard LoopbackPort.isAccepting(port: clientPort) else { return false }
            let result = try await etcdctl.run("endpoint", "health", "--command-timeout=2s", "--dial-timeout=1s")
            return isHealthy(result)
        }
        return healthy && !exited
    }

    /// Whether `etcdctl endpoint health` found the server serving. etcdctl 3.4 prints the health
    /// line on standard error. With auth on, the health read has no user: its refusal (after
    /// the read barrier) also shows that the server serves.
    public static func isHealthy(_ result: EtcdctlResult) -> Bool {
        let printed = result.standardOutput + result.standardError
        return (result.succeeded && printed.contains("is healthy")) || printed.contains("user name is empty")
    }
}

/// Starts a server of `flavor` with a fresh data directory, runs `body` with it, then stops the
/// server and removes its files, whether `body` returns or throws.
///
/// At most ``ServerSlots/shared`` servers run at once across all tests; a call waits for a slot.
/// (So a test must not nest calls beyond that limit.)
public func withEtcd<Result: Sendable>(
    _ flavor: ServerFlavor,
    options: EtcdOptions = EtcdOptions(),
    _ body: (EtcdProcess) async throws -> Result
) async throws -> Result {
    try await ServerSlots.shared.withPermit {
        let directory = try TemporaryDirectory(prefix: "etcd-\(flavor == .realEtcd ? "real" : "swift")")
        defer { directory.remove() }
        let server = try await EtcdProcess.start(flavor, options: options, in: directory)
        let outcome: Swift.Result<Result, any Error>
        do {
            outcome = .success(try await body(server))
        } catch {
            outcome = .failure(error)
        }
        await server.stop()
        return try outcome.get()
    }
}

/// Servers that failed to start in this test run, by flavor and flags.
///
/// A server that does not come up usually fails the same way every time; without this, every
/// test would wait out the full start timeout again and a broken build would take many minutes
/// to report. Later starts with the same flavor and flags fail at once with the first message.
final class StartupFailures: Sendable {
    struct Key: Hashable {
        var flavor: ServerFlavor
        var arguments: [String]
    }

    static let shared = StartupFailures()

    private let failures = Mutex<[Key: String]>([:])

    func failure(for key: Key) -> String? {
        failures.withLock { $0[key] }
    }

    func record(_ message: String, for key: Key) {
        failures.withLock { failures in
            if failures[key] == nil { failures[key] = message }
        }
    }
}
