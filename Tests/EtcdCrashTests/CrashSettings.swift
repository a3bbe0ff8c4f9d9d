import Foundation

/// The crash test's knobs, from the environment (see `scripts/crash-soak.sh`).
struct CrashSettings: Sendable {
    /// Kill cycles (`CRASH_CYCLES`, default 20).
    var cycles: Int
    /// The seed of the workload and kill moments (`SEED`, default random; printed either way).
    var seed: UInt64
    /// Concurrent writer tasks (`CRASH_WRITERS`, default 8).
    var writers: Int
    /// gRPC connections the writers share (`CRASH_CONNECTIONS`, default 3).
    var connections: Int
    /// The server is killed once this many writes of a cycle are acknowledged, a seeded draw from
    /// this range (`CRASH_MIN_ACKS`, `CRASH_MAX_ACKS`, default 5...120).
    var acknowledgementsBeforeKill: ClosedRange<Int>
    /// Acknowledged changes read back at their own revision per cycle (`CRASH_HISTORY_READS`, default 16).
    var historicalReadsPerCycle: Int

    /// Every RPC's deadline: nothing the test sends may hang.
    var rpcTimeout: Duration = .seconds(10)
    /// How long a cycle's writers may take to reach their kill moment before the server counts as hung.
    var writePhaseTimeout: Duration = .seconds(30)
    /// How long a restarted server may take to answer `endpoint health`.
    var startTimeout: Duration = .seconds(30)

    static func fromEnvironment() -> CrashSettings {
        let environment = ProcessInfo.processInfo.environment
        func integer(_ name: String, _ fallback: Int) -> Int {
            environment[name].flatMap { Int($0) } ?? fallback
        }
        let minAcks = max(0, integer("CRASH_MIN_ACKS", 5))
        return CrashSettings(
            cycles: max(1, integer("CRASH_CYCLES", 20)),
            seed: environment["SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max),
            writers: max(1, integer("CRASH_WRITERS", 8)),
            connections: max(1, integer("CRASH_CONNECTIONS", 3)),
            acknowledgementsBeforeKill: minAcks...max(minAcks, integer("CRASH_MAX_ACKS", 120)),
            historicalReadsPerCycle: max(0, integer("CRASH_HISTORY_READS", 16))
        )
    }
}

