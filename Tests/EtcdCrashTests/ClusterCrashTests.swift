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

/// The crash test on a three-member cluster of the real binary: writers spread over the members
/// put, txn and delete; at a seeded moment one member (the leader or a follower), or two at once,
/// gets SIGKILL with writes in flight. While one member is down the other two must keep taking
/// writes; then the killed members restart on their data directories and every member must show
/// every acknowledged write, agree with the others on the revision and the whole key space, and
/// serve the acknowledged history at its revisions (see ``CrashHistory``). The cycles share the
/// cluster, so history accumulates.
///
/// Knobs: `SEED`, `CLUSTER_CRASH_CYCLES` (default 6) and the rest of ``CrashSettings``;
/// `scripts/crash-soak.sh --cluster` runs many cycles. `COMPAT_BOTH_REAL=1` runs it against real
/// etcd, to check the test itself.
@Suite("Crash: SIGKILL of cluster members while writes are in flight")
struct ClusterCrashTests {
    @Test("every acknowledged write survives killing the leader, a follower or two members; all members agree")
    func acknowledgedWritesSurviveMemberKills() async throws {
        let settings = CrashSettings.fromEnvironment(cyclesVariable: "CLUSTER_CRASH_CYCLES", defaultCycles: 6)
        print(
            "ClusterCrashTests: SEED=\(settings.seed) CLUSTER_CRASH_CYCLES=\(settings.cycles) "
                + "writers=\(settings.writers) kill after \(settings.acknowledgementsBeforeKill) acknowledgements, "
                + "\(settings.acknowledgementsDuringOutage) more while a member is down"
        )
        let clock = ContinuousClock()
        let started = clock.now
        do {
            try await withEtcdCluster(.candidate, startTimeout: settings.startTimeout, keepFilesOnFailure: true) {
                cluster in
                var run = ClusterCrashRun(settings: settings, cluster: cluster)
                try await run.run()
            }
        } catch {
            Issue.record(
                """
                cluster crash test FAILED with SEED=\(settings.seed) CLUSTER_CRASH_CYCLES=\(settings.cycles): \(error)
                """
            )
            return
        }
        print("ClusterCrashTests: \(settings.cycles) cluster kill cycles passed in \(clock.now - started)")
    }
}

/// One run of kill cycles against one three-member cluster.
struct ClusterCrashRun {
    typealias Member = EtcdCluster.Member

    /// Whom a cycle kills.
    enum Victims: CaseIterable, CustomStringConvertible {
        /// The leader: the others elect a new one and carry on.
        case leader
        /// A follower, another than the member killed last when possible, so that members go down
        /// one after another across cycles (each must have caught up before the next goes).
        case follower
        /// Two members at once (the leader and a follower, or both followers): the cluster has no
        /// quorum until they are back, and still nothing acknowledged may be lost.
        case twoAtOnce

        var description: String {
            switch self {
            case .leader: return "the leader"
            case .follower: return "a follower"
            case .twoAtOnce: return "two members at once"
            }
        }
    }

    let settings: CrashSettings
    let cluster: EtcdCluster
    var history = CrashHistory()
    var random: SplitMix64
    var lastKilled: Member?

    init(settings: CrashSettings, cluster: EtcdCluster) {
        self.settings = settings
        self.cluster = cluster
        self.random = SplitMix64(seed: settings.seed)
    }

    var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = settings.rpcTimeout
        // A call to a killed member fails at once, so that its writer moves on to another member.
        options.waitForReady = false
        return options
    }

    mutating func run() async throws {
        // Every kind of kill comes up in each three cycles, in a seeded order.
        var schedule: [Victims] = []
        while schedule.count < settings.cycles { schedule += Victims.allCases.shuffled(using: &random) }
        for cycle in 1...settings.cycles {
            try await runCycle(cycle, victims: schedule[cycle - 1])
        }
    }

    /// Writes until the kill moment, kills, writes on while quorum holds, restarts and verifies.
    private mutating func runCycle(_ cycle: Int, victims kind: Victims) async throws {
        let target = Int.random(in: settings.acknowledgementsBeforeKill, using: &random)
        let outageTarget =
            kind == .twoAtOnce ? 0 : Int.random(in: settings.acknowledgementsDuringOutage, using: &random)
        let writerSeeds = (0..<settings.writers).map { _ in random.next() }
        let (victims, leader) = try await chooseVictims(kind, cycle: cycle)
        let phase = try await writeAndKill(
            cycle: cycle,
            victims: victims,
            target: target,
            outageTarget: outageTarget,
            writerSeeds: writerSeeds
        )
        let log = phase.log
        for (write, revision) in log.acknowledged { history.acknowledged(write, revision: revision) }
        for write in log.inFlight { history.inFlight(write) }
        let killed = victims.map(\.name).joined(separator: " and ")
        guard log.unexpectedErrors.isEmpty else {
            throw failure(
                cycle,
                "writes failed before the kill:\n" + log.unexpectedErrors.prefix(10).joined(separator: "\n")
            )
        }
        guard phase.reachedKill else {
            throw failure(
                cycle,
                "the cluster acknowledged only \(log.acknowledged.count) of \(target) writes within "
                    + "\(settings.writePhaseTimeout): it hung"
            )
        }
        for (member, exit) in phase.exits where exit != ProcessExit(status: SIGKILL, signaled: true) {
            throw failure(
                cycle,
                "\(member.name) was not running when the kill came: \(exit.map(\.description) ?? "no process")"
            )
        }
        guard phase.reachedOutageTarget else {
            throw failure(
                cycle,
                "with \(killed) killed, the other members acknowledged only "
                    + "\(log.acknowledged.count - phase.acknowledgedAtKill) of \(outageTarget) writes within "
                    + "\(settings.writePhaseTimeout): the cluster lost availability though it kept quorum"
            )
        }

        do {
            for member in victims { try await cluster.restart(member, wait: false) }
            try await cluster.waitUntilHealthy(victims, timeout: settings.startTimeout)
        } catch {
            throw failure(cycle, "\(killed) did not come back after SIGKILL: \(error)")
        }
        let (observed, storeRevision) = try await verify(cycle: cycle)
        print(
            "cluster crash cycle \(cycle)/\(settings.cycles): killed \(killed) (\(kind); \(leader.name) led) after "
                + "\(phase.acknowledgedAtKill) acknowledged writes, "
                + "\(log.acknowledged.count - phase.acknowledgedAtKill) more after the kill, "
                + "\(log.inFlight.count) of unknown outcome; highest acknowledged revision "
                + "\(history.highestAcknowledgedRevision), every member at revision \(storeRevision) after the restart"
        )
        history.settle(observed: observed, storeRevision: storeRevision)
        lastKilled = victims.last
    }

    /// The members `kind` kills, and the leader they were chosen against.
    private mutating func chooseVictims(_ kind: Victims, cycle: Int) async throws -> ([Member], leader: Member) {
        guard let leader = try await cluster.leader() else {
            throw failure(cycle, "the members agree on no leader before the kill")
        }
        let followers = cluster.members.filter { $0 != leader }
        guard followers.count == 2 else {
            throw failure(cycle, "\(leader.name) leads but the cluster has \(cluster.members.count) members, not 3")
        }
        // Each draw is made whatever the cluster looks like, so a seed replays the same kinds.
        let roll = Int.random(in: 0..<2, using: &random)
        switch kind {
        case .leader:
            return ([leader], leader)
        case .follower:
            let others = followers.filter { $0 != lastKilled }
            let candidates = others.isEmpty ? followers : others
            return ([candidates[roll % candidates.count]], leader)
        case .twoAtOnce:
            return (roll == 0 ? [leader, followers[0]] : followers, leader)
        }
    }

    /// What one cycle's writers did around the kill.
    struct WritePhase: Sendable {
        var log: CycleRecorder.Log
        /// Whether the writers reached the kill moment.
        var reachedKill: Bool
        var acknowledgedAtKill: Int
        /// Whether the surviving members took the writes asked of them while the victims were down.
        var reachedOutageTarget: Bool
        var exits: [(Member, ProcessExit?)]
    }

    /// Runs the writers, spread over the members, until `target` acknowledgements (or a failure, or
    /// the deadline), SIGKILLs `victims` with writes in flight, then (one victim: the others keep
    /// quorum) waits for `outageTarget` more acknowledgements before the writers stop.
    private func writeAndKill(
        cycle: Int,
        victims: [Member],
        target: Int,
        outageTarget: Int,
        writerSeeds: [UInt64]
    ) async throws -> WritePhase {
        let recorder = CycleRecorder(writers: writerSeeds.count, killAfterAcknowledgements: target)
        let options = callOptions
        let cluster = cluster
        let settings = settings
        return try await withClients(ports: cluster.members.map(\.clientPort)) { clients in
            await withTaskGroup(of: Void.self) { group in
                for (writer, seed) in writerSeeds.enumerated() {
                    // Writer w starts on member w mod 3 and moves on to the next when its member fails.
                    let home = writer % clients.count
                    let order = Array(clients[home...] + clients[..<home])
                    group.addTask {
                        await CrashWorkload.runWriter(
                            writer,
                            cycle: cycle,
                            seed: seed,
                            clients: order,
                            recorder: recorder,
                            options: options
                        )
                    }
                }
                let reached = await recorder.waitForKillMoment(timeout: settings.writePhaseTimeout)
                let keepWriting = reached && victims.count == 1
                recorder.requestKill(stopWriters: !keepWriting)
                let acknowledgedAtKill = recorder.log.acknowledged.count
                let exits = await withTaskGroup(of: (Member, ProcessExit?).self) { kills in
                    for member in victims { kills.addTask { (member, await cluster.kill(member)) } }
                    var exits: [(Member, ProcessExit?)] = []
                    for await exit in kills { exits.append(exit) }
                    return exits
                }
                var reachedOutageTarget = true
                if keepWriting {
                    reachedOutageTarget = await recorder.waitForAcknowledgements(
                        acknowledgedAtKill + outageTarget,
                        timeout: settings.writePhaseTimeout
                    )
                    recorder.requestStop()
                    // Calls to the live members finish; those still waiting are cancelled below.
                    _ = await recorder.waitForWriters(timeout: settings.writerStopTimeout)
                }
                // Without quorum a call would wait out its deadline; its outcome is unknown anyway.
                group.cancelAll()
                await group.waitForAll()
                return WritePhase(
                    log: recorder.log,
                    reachedKill: reached,
                    acknowledgedAtKill: acknowledgedAtKill,
                    reachedOutageTarget: reachedOutageTarget,
                    exits: exits
                )
            }
        }
    }

    // MARK: Verification

    /// Checks every member against the history: a linearizable read through each, then a
    /// serializable read of the whole key space on each once all show one revision (they must be
    /// identical), then the cycle's acknowledged changes at their revisions through each. Returns
    /// the workload's keys and the revision every member agrees on.
    private mutating func verify(cycle: Int) async throws -> ([String: ObservedKey], Int64) {
        var problems: [String] = []
        var highest: Int64 = 0
        for member in cluster.members {
            let response = try await range(
                cycle: cycle,
                via: member,
                KVRequest.range(CrashWorkload.prefix, end: CrashWorkload.prefixEnd)
            )
            let observed = try workloadKeys(cycle: cycle, member: member, response)
            highest = max(highest, response.header.revision)
            problems += history.check(observed: observed, storeRevision: response.header.revision).map {
                "\(member.name) (linearizable): \($0)"
            }
        }
        let snapshots = try await agreedKeySpaces(cycle: cycle, atLeast: highest)
        guard let firstSnapshot = snapshots.first else { throw failure(cycle, "no member answered") }
        let (first, reference) = firstSnapshot
        let revision = reference.header.revision
        for (member, response) in snapshots.dropFirst() where response.kvs != reference.kvs {
            problems.append(
                "\(member.name) and \(first.name) differ at revision \(revision): "
                    + Self.difference(response.kvs, reference.kvs)
            )
        }
        for (member, response) in snapshots {
            let observed = try workloadKeys(
                cycle: cycle,
                member: member,
                Self.workloadPart(of: response)
            )
            problems += history.check(observed: observed, storeRevision: revision).map {
                "\(member.name) (serializable, caught up): \($0)"
            }
        }
        problems += try await checkHistory(cycle: cycle, storeRevision: revision)
        guard problems.isEmpty else {
            throw failure(
                cycle,
                "\(problems.count) broken promises after the restart:\n" + problems.prefix(30).joined(separator: "\n")
            )
        }
        return (try workloadKeys(cycle: cycle, member: first, Self.workloadPart(of: reference)), revision)
    }

    /// Serializable reads of every key on every member, repeated until all show one revision, at
    /// least `floor` (the restarted members have caught up).
    private func agreedKeySpaces(
        cycle: Int,
        atLeast floor: Int64
    ) async throws -> [(Member, Etcdserverpb_RangeResponse)] {
        let request = KVRequest.range("\0", end: "\0") { $0.serializable = true }
        var latest: [(Member, Etcdserverpb_RangeResponse)] = []
        let agreed = try await poll(timeout: settings.catchUpTimeout, interval: .milliseconds(50)) {
            latest = []
            for member in cluster.members {
                latest.append((member, try await range(cycle: cycle, via: member, request)))
            }
            let revisions = Set(latest.map(\.1.header.revision))
            return revisions.count == 1 && (revisions.first ?? 0) >= floor
        }
        guard agreed else {
            let revisions = latest.map { "\($0.0.name) at \($0.1.header.revision)" }.joined(separator: ", ")
            throw failure(
                cycle,
                "the members did not reach one revision (at least \(floor), the linearizable reads') within "
                    + "\(settings.catchUpTimeout): \(revisions)"
            )
        }
        return latest
    }

    /// Reads a seeded sample of this cycle's acknowledged changes at their own revisions through
    /// every member: each member's history, not only its latest state, must hold them.
    private mutating func checkHistory(cycle: Int, storeRevision: Int64) async throws -> [String] {
        var sample = history.acknowledgedChanges
        sample.shuffle(using: &random)
        sample = Array(sample.prefix(settings.historicalReadsPerCycle))
        var problems: [String] = []
        for member in cluster.members {
            for change in sample {
                let request = KVRequest.range(change.key) { $0.revision = change.revision }
                let response: Etcdserverpb_RangeResponse
                do {
                    response = try await range(cycle: cycle, via: member, request, reportingErrors: false)
                } catch {
                    problems.append(
                        "\(member.name): \(change.key) at revision \(change.revision) (acknowledged \(change.effect)) "
                            + "cannot be read with the store at revision \(storeRevision): \(error)"
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
                    problems.append("\(member.name): \(problem)")
                }
            }
        }
        return problems
    }

    /// One Range through `member`; a failure fails the cycle unless `reportingErrors` is false.
    private func range(
        cycle: Int,
        via member: Member,
        _ request: Etcdserverpb_RangeRequest,
        reportingErrors: Bool = true
    ) async throws -> Etcdserverpb_RangeResponse {
        let options = callOptions
        do {
            return try await withEtcdGRPCClient(port: member.clientPort) { client in
                try await client.kv.range(request, options: options)
            }
        } catch where reportingErrors {
            throw failure(cycle, "reading through \(member.name) after the restart failed: \(error)")
        }
    }

    /// The workload's keys in `response`, which must hold every key of its range.
    private func workloadKeys(
        cycle: Int,
        member: Member,
        _ response: Etcdserverpb_RangeResponse
    ) throws -> [String: ObservedKey] {
        guard !response.more, response.count == Int64(response.kvs.count) else {
            throw failure(
                cycle,
                "a range through \(member.name) returned \(response.kvs.count) of \(response.count) keys"
            )
        }
        var observed: [String: ObservedKey] = [:]
        for kv in response.kvs {
            observed[String(decoding: kv.key, as: UTF8.self)] = ObservedKey(
                value: String(decoding: kv.value, as: UTF8.self),
                modRevision: kv.modRevision
            )
        }
        return observed
    }

    /// `response` (of the whole key space) cut down to the workload's keys.
    private static func workloadPart(of response: Etcdserverpb_RangeResponse) -> Etcdserverpb_RangeResponse {
        var part = response
        part.kvs = response.kvs.filter { $0.key.starts(with: Data(CrashWorkload.prefix.utf8)) }
        part.count = Int64(part.kvs.count)
        return part
    }

    /// The first few keys where two members' key spaces differ, for the failure message.
    private static func difference(_ one: [Mvccpb_KeyValue], _ other: [Mvccpb_KeyValue]) -> String {
        func describe(_ kv: Mvccpb_KeyValue?) -> String {
            guard let kv else { return "absent" }
            return "\(String(decoding: kv.value, as: UTF8.self)) (create \(kv.createRevision), mod \(kv.modRevision), "
                + "version \(kv.version), lease \(kv.lease))"
        }
        let mine = Dictionary(one.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let theirs = Dictionary(other.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let keys = Set(mine.keys).union(theirs.keys).filter { mine[$0] != theirs[$0] }
        let shown = keys.map { String(decoding: $0, as: UTF8.self) }.sorted().prefix(10).map { key in
            let data = Data(key.utf8)
            return "\(key): \(describe(mine[data])) vs \(describe(theirs[data]))"
        }
        return "\(one.count) keys vs \(other.count); " + shown.joined(separator: "; ")
    }

    private func failure(_ cycle: Int, _ message: String) -> CrashFailure {
        CrashFailure(
            description: "cycle \(cycle) of \(settings.cycles): \(message)\n"
                + "data directories and every launch's log kept in \(cluster.directory.path)\n"
                + "log tails:\n\(cluster.logTails(lines: 30))"
        )
    }
}
