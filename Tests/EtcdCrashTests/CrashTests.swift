import EtcdAPI
import EtcdRaft
import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The crash test of issue 5, against the real `etcd` binary: concurrent writers put, txn and
/// delete; at a seeded moment the server gets SIGKILL with writes in flight, is restarted on the
/// same data directory and ports, and must show every acknowledged write (see ``CrashHistory``).
/// The cycles share one data directory, so history accumulates.
///
/// Knobs: `SEED`, `CRASH_CYCLES` (default 20) and the rest of ``CrashSettings``;
/// `scripts/crash-soak.sh` runs many cycles. `COMPAT_BOTH_REAL=1` runs it against real etcd, to
/// check the test itself.
@Suite("Crash: SIGKILL while writes are in flight")
struct CrashTests {
    @Test("every acknowledged write survives SIGKILL, over many kill cycles on one data directory")
    func acknowledgedWritesSurviveKills() async throws {
        let settings = CrashSettings.fromEnvironment()
        print(
            "EtcdCrashTests: SEED=\(settings.seed) CRASH_CYCLES=\(settings.cycles) writers=\(settings.writers) "
                + "connections=\(settings.connections) "
                + "kill after \(settings.acknowledgementsBeforeKill) acknowledgements"
        )
        let clock = ContinuousClock()
        let started = clock.now
        try await ServerSlots.shared.withPermit {
            let directory = try TemporaryDirectory(prefix: "etcd-crash")
            let server: EtcdProcess
            do {
                server = try await EtcdProcess.start(
                    .candidate,
                    options: EtcdOptions(startTimeout: settings.startTimeout),
                    in: directory
                )
            } catch {
                directory.remove()
                throw error
            }
            var failure: String?
            do {
                var run = CrashRun(settings: settings, server: server)
                try await run.run()
            } catch {
                failure = "\(error)"
            }
            // Whatever happened, nothing the test started outlives it.
            await server.stop()
            guard let failure else {
                directory.remove()
                print("EtcdCrashTests: \(settings.cycles) kill cycles passed in \(clock.now - started)")
                return
            }
            Issue.record(
                """
                crash test FAILED with SEED=\(settings.seed) CRASH_CYCLES=\(settings.cycles): \(failure)
                data directory and every launch's log kept in \(directory.path)
                """
            )
        }
    }
}

/// A failure of the crash test, with everything needed to understand it in its message.
struct CrashFailure: Error, CustomStringConvertible {
    var description: String
}

/// One run of kill cycles against one server and data directory.
struct CrashRun {
    let settings: CrashSettings
    let server: EtcdProcess
    var history = CrashHistory()
    var random: SplitMix64

    init(settings: CrashSettings, server: EtcdProcess) {
        self.settings = settings
        self.server = server
        self.random = SplitMix64(seed: settings.seed)
    }

    var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = settings.rpcTimeout
        return options
    }

    mutating func run() async throws {
        for cycle in 1...settings.cycles {
            try await runCycle(cycle)
        }
    }

    /// Writes until the kill moment, kills, restarts and verifies.
    private mutating func runCycle(_ cycle: Int) async throws {
        let target = Int.random(in: settings.acknowledgementsBeforeKill, using: &random)
        let writerSeeds = (0..<settings.writers).map { _ in random.next() }
        let (log, reached) = try await writeAndKill(cycle: cycle, target: target, writerSeeds: writerSeeds)
        for (write, revision) in log.acknowledged { history.acknowledged(write, revision: revision) }
        for write in log.inFlight { history.inFlight(write) }
        guard log.unexpectedErrors.isEmpty else {
            throw failure(
                cycle,
                "writes failed before the kill:\n" + log.unexpectedErrors.prefix(10).joined(separator: "\n")
            )
        }
        guard reached else {
            throw failure(
                cycle,
                "the server acknowledged only \(log.acknowledged.count) of \(target) writes within "
                    + "\(settings.writePhaseTimeout): it hung"
            )
        }

        do {
            try await server.start()
        } catch {
            throw failure(cycle, "the server did not come back after SIGKILL: \(error)")
        }
        let (observed, storeRevision) = try await readEverything(cycle: cycle)
        var problems = history.check(observed: observed, storeRevision: storeRevision)
        problems += try await checkHistory(cycle: cycle, storeRevision: storeRevision)
        guard problems.isEmpty else {
            throw failure(
                cycle,
                "\(problems.count) broken promises after the restart:\n" + problems.prefix(20).joined(separator: "\n")
            )
        }
        print(
            "crash cycle \(cycle)/\(settings.cycles): killed after \(log.acknowledged.count) acknowledged writes "
                + "with \(log.inFlight.count) in flight; highest acknowledged revision "
                + "\(history.highestAcknowledgedRevision), store revision \(storeRevision) after the restart"
        )
        history.settle(observed: observed, storeRevision: storeRevision)
    }

    /// Runs the writers until `target` acknowledgements (or a failure, or the deadline), then
    /// SIGKILLs the server with their writes in flight and stops them.
    private func writeAndKill(
        cycle: Int,
        target: Int,
        writerSeeds: [UInt64]
    ) async throws -> (CycleRecorder.Log, reached: Bool) {
        let recorder = CycleRecorder(writers: writerSeeds.count, killAfterAcknowledgements: target)
        let options = callOptions
        let server = server
        let timeout = settings.writePhaseTimeout
        let (reached, exit) = try await withClients(port: server.clientPort, count: settings.connections) { clients in
            await withTaskGroup(of: Void.self) { group in
                for (writer, seed) in writerSeeds.enumerated() {
                    let client = clients[writer % clients.count]
                    group.addTask {
                        await CrashWorkload.runWriter(
                            writer,
                            cycle: cycle,
                            seed: seed,
                            clients: [client],
                            recorder: recorder,
                            options: options
                        )
                    }
                }
                let reached = await recorder.waitForKillMoment(timeout: timeout)
                recorder.requestKill()
                let exit = await server.kill()
                // Writers that began a call just before the kill would otherwise wait out its deadline.
                group.cancelAll()
                return (reached, exit)
            }
        }
        guard exit == ProcessExit(status: SIGKILL, signaled: true) else {
            throw failure(
                cycle,
                "the server was not running when the kill came: \(exit.map(\.description) ?? "no process")"
            )
        }
        return (recorder.log, reached)
    }

    /// Every key of the workload and the store's revision, from one linearizable range.
    private func readEverything(cycle: Int) async throws -> ([String: ObservedKey], Int64) {
        let options = callOptions
        let response: Etcdserverpb_RangeResponse
        do {
            response = try await server.withGRPCClient { client in
                try await client.kv.range(
                    KVRequest.range(CrashWorkload.prefix, end: CrashWorkload.prefixEnd),
                    options: options
                )
            }
        } catch {
            throw failure(cycle, "reading the keys after the restart failed: \(error)")
        }
        var observed: [String: ObservedKey] = [:]
        for kv in response.kvs {
            observed[String(decoding: kv.key, as: UTF8.self)] = ObservedKey(
                value: String(decoding: kv.value, as: UTF8.self),
                modRevision: kv.modRevision
            )
        }
        guard !response.more, response.count == Int64(response.kvs.count) else {
            throw failure(cycle, "the range returned \(response.kvs.count) of \(response.count) keys")
        }
        return (observed, response.header.revision)
    }

    /// Reads a seeded sample of this cycle's acknowledged changes at their own revisions: the
    /// history, not only the latest state, must have survived.
    /// A read that fails for a revision the store should have is a broken promise too (reported
    /// next to the others rather than instead of them).
    private mutating func checkHistory(cycle: Int, storeRevision: Int64) async throws -> [String] {
        var sample = history.acknowledgedChanges
        sample.shuffle(using: &random)
        sample = Array(sample.prefix(settings.historicalReadsPerCycle))
        guard !sample.isEmpty else { return [] }
        let options = callOptions
        do {
            return try await server.withGRPCClient { client in
                var problems: [String] = []
                for change in sample {
                    let request = KVRequest.range(change.key) { $0.revision = change.revision }
                    let response: Etcdserverpb_RangeResponse
                    do {
                        response = try await client.kv.range(request, options: options)
                    } catch let error as RPCError where error.code != .deadlineExceeded && error.code != .unavailable {
                        problems.append(
                            "\(change.key) at revision \(change.revision) (acknowledged \(change.effect)) cannot be "
                                + "read with the store at revision \(storeRevision): \(error.code): \(error.message)"
                        )
                        continue
                    }
                    let observed = response.kvs.first.map {
                        ObservedKey(value: String(decoding: $0.value, as: UTF8.self), modRevision: $0.modRevision)
                    }
                    if let problem = CrashHistory.checkHistorical(
                        key: change.key,
                        effect: change.effect,
                        revision: change.revision,
                        observed: observed
                    ) {
                        problems.append(problem)
                    }
                }
                return problems
            }
        } catch {
            throw failure(cycle, "historical reads after the restart failed: \(error)")
        }
    }

    private func failure(_ cycle: Int, _ message: String) -> CrashFailure {
        CrashFailure(
            description: "cycle \(cycle) of \(settings.cycles): \(message)\nserver log tail (\(server.logFile.path)):\n"
                + server.logTail(lines: 30)
        )
    }
}

/// Runs `body` with `count` gRPC clients, each with its own connection to `127.0.0.1:<port>`.
func withClients<Result: Sendable>(
    port: Int,
    count: Int,
    _ body: ([EtcdGRPCClient]) async throws -> Result
) async throws -> Result {
    try await withClients(ports: Array(repeating: port, count: count), body)
}

/// Runs `body` with one gRPC client per entry of `ports`, each with its own connection to
/// `127.0.0.1:<port>`, in the order of `ports`.
func withClients<Result: Sendable>(
    ports: [Int],
    _ body: ([EtcdGRPCClient]) async throws -> Result
) async throws -> Result {
    guard let port = ports.first else { return try await body([]) }
    // A writer may not get to send anything before the kill, leaving its connection unused.
    return try await withEtcdGRPCClientAllowingNoCalls(port: port) { first in
        try await withClients(ports: Array(ports.dropFirst())) { rest in try await body([first] + rest) }
    }
}
