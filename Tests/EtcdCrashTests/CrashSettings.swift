import Foundation

/// The crash test's knobs, from the environment (see `scripts/crash-soak.sh`).
struct CrashSettings: Sendable {
    /// Kill cycles (`CRASH_CYCLES`, default 20; the cluster test's `CLUSTER_CRASH_CYCLES`, default 6).
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
    /// Cluster test only: writes the surviving members must acknowledge while one member is down, a
    /// seeded draw from this range (`CLUSTER_CRASH_MIN_OUTAGE_ACKS`, `CLUSTER_CRASH_MAX_OUTAGE_ACKS`,
    /// default 0...60).
    var acknowledgementsDuringOutage: ClosedRange<Int> = 0...60

    /// Every RPC's deadline: nothing the test sends may hang.
    var rpcTimeout: Duration = .seconds(10)
    /// How long a cycle's writers may take to reach their kill moment before the server counts as hung.
    var writePhaseTimeout: Duration = .seconds(30)
    /// How long a restarted server may take to answer `endpoint health`.
    var startTimeout: Duration = .seconds(30)
    /// Cluster test only: how long writers may take to finish their calls once asked to stop
    /// (a call whose proposal died with the leader waits for the server's request timeout); the rest
    /// are cancelled and count as in flight.
    var writerStopTimeout: Duration = .seconds(3)
    /// Cluster test only: how long restarted members may take to reach the revision of the others.
    var catchUpTimeout: Duration = .seconds(15)

    /// The settings, with the cycle count from `cyclesVariable` (default `defaultCycles`).
    static func fromEnvironment(cyclesVariable: String = "CRASH_CYCLES", defaultCycles: Int = 20) -> CrashSettings {
        let environment = ProcessInfo.processInfo.environment
        func integer(_ name: String, _ fallback: Int) -> Int {
            environment[name].flatMap { Int($0) } ?? fallback
        }
        let minAcks = max(0, integer("CRASH_MIN_ACKS", 5))
        let minOutageAcks = max(0, integer("CLUSTER_CRASH_MIN_OUTAGE_ACKS", 0))
        let maxOutageAcks = max(minOutageAcks, integer("CLUSTER_CRASH_MAX_OUTAGE_ACKS", 60))
        return CrashSettings(
            cycles: max(1, integer(cyclesVariable, defaultCycles)),
            seed: environment["SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max),
            writers: max(1, integer("CRASH_WRITERS", 8)),
            connections: max(1, integer("CRASH_CONNECTIONS", 3)),
            acknowledgementsBeforeKill: minAcks...max(minAcks, integer("CRASH_MAX_ACKS", 120)),
            historicalReadsPerCycle: max(0, integer("CRASH_HISTORY_READS", 16)),
            acknowledgementsDuringOutage: minOutageAcks...maxOutageAcks
        )
    }
}

