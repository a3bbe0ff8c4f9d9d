import EtcdAPI
import EtcdRaft
import EtcdTestSupport
import Foundation
import GRPCCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A network partition of the real binary: three members, each in a network namespace of its
/// own joined by veth pairs to a bridge in the root namespace, where the clients run. The leader
/// is cut off from both peers with blackhole routes (this machine's kernel has no netem and there
/// is no iptables), while the clients still reach every member. The majority must elect a new
/// leader and keep taking writes, the old leader must step down (etcd's CheckQuorum) and serve
/// no linearizable read, and after the heal all three must agree again; the whole history of
/// linearizable puts and gets must be linearizable and every acknowledged put must be stored.
///
/// The same network with every link slow, then lossy (token bucket filters on the veth pairs),
/// then healthy: the same promises must hold.
///
/// Needs root on Linux and `ip` (and `tc` for the links); elsewhere the tests are skipped. Knobs:
/// `SEED` (printed), `NETFAULT_ROUNDS` (default 1: each round builds a fresh network and cluster),
/// `NETFAULT_SERVER=etcd` (the same rounds against real etcd, to compare).
@Suite("Network faults", .serialized)
struct NetworkFaultTests {
    static let ipExecutable = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static let tcExecutable = ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc", "/bin/tc"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static var canBuildNetworks: Bool {
        #if os(Linux)
        return getuid() == 0 && ipExecutable != nil
        #else
        return false
        #endif
    }

    @Test(
        "cut-off leader steps down, majority elects another and takes writes, no stale read, all agree after heal",
        .enabled(if: canBuildNetworks, "needs root on Linux with `ip` (network namespaces, veth pairs, a bridge)")
    )
    func partitionedLeader() async throws {
        guard let ip = Self.ipExecutable else { return }
        try await Self.runRounds { seed, flavor in
            NetworkFaultRound(seed: seed, ip: ip, fault: .partitionedLeader, flavor: flavor)
        }
    }

    @Test(
        "slow links, then lossy links: the cluster answers throughout, and afterwards all agree with nothing acknowledged lost",
        .enabled(if: canBuildNetworks && tcExecutable != nil, "needs root on Linux with `ip` and `tc`")
    )
    func slowAndLossyLinks() async throws {
        guard let ip = Self.ipExecutable else { return }
        try await Self.runRounds { seed, flavor in
            NetworkFaultRound(seed: seed, ip: ip, fault: .slowAndLossyLinks, flavor: flavor)
        }
    }

    /// `NETFAULT_ROUNDS` rounds, each with a seed drawn from `SEED`; stops at the first that
    /// could not be run.
    static func runRounds(_ round: (UInt64, ServerFlavor) -> NetworkFaultRound) async throws {
        let environment = ProcessInfo.processInfo.environment
        let rounds = max(1, environment["NETFAULT_ROUNDS"].flatMap { Int($0) } ?? 1)
        let seed = environment["SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        let flavor: ServerFlavor = environment["NETFAULT_SERVER"] == "etcd" ? .realEtcd : .candidate
        print("NetworkFaultTests: SEED=\(seed) NETFAULT_ROUNDS=\(rounds) server: \(flavor)")
        var random = SplitMix64(seed: seed)
        let clock = ContinuousClock()
        for index in 1...rounds {
            let started = clock.now
            do {
                let problems = try await round(random.next(), flavor).run()
                for problem in problems {
                    Issue.record("round \(index) (SEED=\(seed)): \(problem)")
                }
            } catch {
                Issue.record("round \(index) of \(rounds) FAILED with SEED=\(seed): \(error)")
                return
            }
            print("NetworkFaultTests: round \(index)/\(rounds) took \(clock.now - started)")
        }
    }
}

struct NetworkFaultError: Error, CustomStringConvertible {
    var description: String
}

// MARK: The network

/// A bridge in the root namespace (10.77.<subnet>.254/24) and three namespaces, each with one
/// end of a veth pair (10.77.<subnet>.<i>/24) whose other end is on the bridge. Every name carries
/// a random suffix, so that runs never meet each other's leftovers.
struct NetworkLab: Sendable {
    let ip: String
    let suffix: String
    let subnet: Int
    let size = 3

    var bridge: String { "nfb\(suffix)" }
    func namespace(_ index: Int) -> String { "nfns\(suffix)-\(index)" }
    func hostLink(_ index: Int) -> String { "nfv\(suffix)h\(index)" }
    func namespaceLink(_ index: Int) -> String { "nfv\(suffix)n\(index)" }
    func address(_ index: Int) -> String { "10.77.\(subnet).\(index)" }

    /// Builds the network; on failure removes what it built and throws.
    static func create(ip: String, random: inout SplitMix64) async throws -> NetworkLab {
        let suffix = String(random.next() & 0xFF_FFFF, radix: 16)
        let lab = NetworkLab(ip: ip, suffix: suffix, subnet: Int.random(in: 1...250, using: &random))
        do {
            try await lab.build()
        } catch {
            await lab.remove()
            throw error
        }
        return lab
    }

    private func build() async throws {
        try await run(["link", "add", bridge, "type", "bridge"])
        try await run(["addr", "add", "\(address(254))/24", "dev", bridge])
        try await run(["link", "set", bridge, "up"])
        for index in 1...size {
            try await run(["netns", "add", namespace(index)])
            try await run(["link", "add", hostLink(index), "type", "veth", "peer", "name", namespaceLink(index)])
            try await run(["link", "set", hostLink(index), "master", bridge])
            try await run(["link", "set", hostLink(index), "up"])
            try await run(["link", "set", namespaceLink(index), "netns", namespace(index)])
            try await inNamespace(index, ["addr", "add", "\(address(index))/24", "dev", namespaceLink(index)])
            try await inNamespace(index, ["link", "set", namespaceLink(index), "up"])
            try await inNamespace(index, ["link", "set", "lo", "up"])
        }
    }

    /// Removes everything, whatever exists of it; never throws (cleanup runs after failures).
    func remove() async {
        for index in 1...size {
            // Deleting the namespace destroys its veth end, and with it the peer on the bridge.
            _ = try? await run(["netns", "del", namespace(index)], check: false)
            _ = try? await run(["link", "del", hostLink(index)], check: false)
        }
        _ = try? await run(["link", "del", bridge], check: false)
    }

    /// `ip netns exec <namespace>`, the prefix that launches a member inside namespace `index`.
    func launchPrefix(_ index: Int) -> [String] { [ip, "netns", "exec", namespace(index)] }

    /// Cuts members `one` and `other` apart: each namespace drops what it sends to the other.
    func partition(_ one: Int, _ other: Int) async throws {
        try await inNamespace(one, ["route", "add", "blackhole", "\(address(other))/32"])
        try await inNamespace(other, ["route", "add", "blackhole", "\(address(one))/32"])
    }

    func heal(_ one: Int, _ other: Int) async throws {
        try await inNamespace(one, ["route", "del", "blackhole", "\(address(other))/32"])
        try await inNamespace(other, ["route", "del", "blackhole", "\(address(one))/32"])
    }

    private func inNamespace(_ index: Int, _ arguments: [String]) async throws {
        try await run(["netns", "exec", namespace(index), ip] + arguments)
    }

    /// Shapes both directions of member `index`'s link with a token bucket filter: what it
    /// sends leaves through its namespace's veth end, what it receives through the bridge's end.
    /// Traffic beyond `shaping`'s rate waits in the queue (delay) up to its latency bound, and
    /// past that is dropped (loss), which TCP then retransmits.
    func shape(_ index: Int, _ shaping: LinkShaping) async throws {
        let tc = try tcExecutable()
        let filter = ["root", "tbf"] + shaping.tbfArguments
        try await run(["netns", "exec", namespace(index), tc, "qdisc", "add", "dev", namespaceLink(index)] + filter)
        try await run(["qdisc", "add", "dev", hostLink(index)] + filter, executable: tc)
    }

    /// Removes member `index`'s shaping, returning the packets its two queues dropped.
    func unshape(_ index: Int) async throws -> Int {
        let tc = try tcExecutable()
        let dropped =
            try await droppedPackets(["netns", "exec", namespace(index), tc, "-s", "qdisc", "show", "dev", namespaceLink(index)])
            + droppedPackets(["-s", "qdisc", "show", "dev", hostLink(index)], executable: tc)
        try await run(["netns", "exec", namespace(index), tc, "qdisc", "del", "dev", namespaceLink(index), "root"])
        try await run(["qdisc", "del", "dev", hostLink(index), "root"], executable: tc)
        return dropped
    }

    private func tcExecutable() throws -> String {
        guard let tc = NetworkFaultTests.tcExecutable else { throw NetworkFaultError(description: "no `tc` on this machine") }
        return tc
    }

    /// The sum of the "dropped N" counts in `tc -s qdisc show`'s output.
    private func droppedPackets(_ arguments: [String], executable: String? = nil) async throws -> Int {
        let (_, output) = try await runCapturing(arguments, executable: executable ?? ip, check: true)
        var total = 0
        for part in output.components(separatedBy: "dropped ").dropFirst() {
            total += Int(part.prefix { $0.isNumber }) ?? 0
        }
        return total
    }

    /// Runs `ip <arguments>` (or another `executable`) with a deadline; throws if it fails and
    /// `check` is set.
    @discardableResult
    func run(_ arguments: [String], executable: String? = nil, check: Bool = true) async throws -> ProcessExit {
        try await runCapturing(arguments, executable: executable ?? ip, check: check).exit
    }

    private func runCapturing(_ arguments: [String], executable: String, check: Bool) async throws -> (
        exit: ProcessExit, output: String
    ) {
        try await withTemporaryDirectory(prefix: "netfault-ip") { scratch in
            let output = scratch.appending("output")
            let child = try ChildProcess(
                executable: URL(fileURLWithPath: executable), arguments: arguments, standardOutput: output,
                standardError: output)
            let exit = await child.waitForExit(timeout: .seconds(10))
            let result: ProcessExit
            if let exit { result = exit } else { result = await child.kill() }
            let text = String(decoding: (try? Data(contentsOf: output)) ?? Data(), as: UTF8.self)
            if check && (exit == nil || result != ProcessExit(status: 0, signaled: false)) {
                let name = URL(fileURLWithPath: executable).lastPathComponent
                throw NetworkFaultError(description: "\(name) \(arguments.joined(separator: " ")): \(result) \(text)")
            }
            return (result, text)
        }
    }
}

/// One setting of a token bucket filter (`tc-tbf`): this kernel has no netem, so delay and loss
/// come from a link too narrow for its traffic. Packets beyond `rate` wait for tokens (delay,
/// up to `latency`), and those that would wait longer are dropped (loss).
struct LinkShaping: Hashable, Sendable, CustomStringConvertible {
    var name: String
    var rate: String
    /// Bytes that may pass at once; a packet or two, so that bursts queue.
    var burstBytes: Int
    /// The longest a packet may queue before it is dropped.
    var latencyMilliseconds: Int
    var tbfArguments: [String] { ["rate", rate, "burst", "\(burstBytes)", "latency", "\(latencyMilliseconds)ms"] }
    var description: String { "\(name): tbf \(tbfArguments.joined(separator: " "))" }

    /// Narrow links with deep queues: bursts (appends carrying the bulk values, snapshots of
    /// answers) wait up to 300 ms, a packet or two is rarely dropped.
    static let slow = LinkShaping(name: "slow links", rate: "1mbit", burstBytes: 1_600, latencyMilliseconds: 300)
    /// Narrow links with shallow queues: whatever does not fit in a few milliseconds of queue is
    /// lost and has to be retransmitted, heartbeats and votes included.
    static let lossy = LinkShaping(name: "lossy links", rate: "512kbit", burstBytes: 3_000, latencyMilliseconds: 5)
}

// MARK: The workload

/// What the workload's clients did, shared between their tasks.
final class NetworkFaultWorkload: Sendable {
    struct AcknowledgedPut: Sendable {
        var key: String
        var value: String
        var revision: Int64
    }

    static let keys = (0..<5).map { "netfault/k\($0)" }

    let recorder = HistoryRecorder<EtcdKVInput, EtcdKVOutput>()
    let stopped = Atomic<Bool>(false)
    let acknowledged = Atomic<Int>(0)
    /// The longest any answered put or get took, in milliseconds.
    let slowestAnswer = Atomic<Int>(0)
    let puts = Mutex<[AcknowledgedPut]>([])

    static func options(timeout: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        // A member that cannot answer fails the call, rather than queueing it.
        options.waitForReady = false
        return options
    }

    /// One linearizable put, recorded; a failure leaves its outcome unknown.
    @discardableResult
    func put(_ key: String, _ value: String, client: Int, via grpc: EtcdGRPCClient, timeout: Duration) async
        -> Int64?
    {
        let call = recorder.begin(client: client, input: .put(key: key, value: value))
        let started = ContinuousClock.now
        do {
            let response = try await grpc.kv.put(KVRequest.put(key, value), options: Self.options(timeout: timeout))
            recorder.end(call, output: .put(revision: response.header.revision))
            noteAnswer(after: started)
            puts.withLock { $0.append(AcknowledgedPut(key: key, value: value, revision: response.header.revision)) }
            acknowledged.add(1, ordering: .relaxed)
            return response.header.revision
        } catch {
            recorder.endUnknown(call)
            return nil
        }
    }

    /// One linearizable get, recorded if answered (a failed read has no effect and is dropped).
    func get(_ key: String, client: Int, via grpc: EtcdGRPCClient, timeout: Duration) async -> Result<
        String?, any Error
    > {
        let call = recorder.begin(client: client, input: .get(key: key))
        let started = ContinuousClock.now
        do {
            let response = try await grpc.kv.range(KVRequest.range(key), options: Self.options(timeout: timeout))
            let value = response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
            recorder.end(call, output: .get(value: value))
            noteAnswer(after: started)
            acknowledged.add(1, ordering: .relaxed)
            return .success(value)
        } catch {
            recorder.abandon(call)
            return .failure(error)
        }
    }

    private func noteAnswer(after started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        slowestAnswer.max(Int(elapsed / .milliseconds(1)), ordering: .relaxed)
    }

    /// Puts of 16 KiB values (unique, so the checker tells them apart) through each client in
    /// turn, one at a time, until stopped.
    func runBulkClient(_ client: Int, via clients: [EtcdGRPCClient], seed: UInt64) async {
        var random = SplitMix64(seed: seed)
        var sequence = 0
        while !stopped.load(ordering: .relaxed) && !Task.isCancelled {
            sequence += 1
            let key = Self.keys[Int.random(in: 0..<Self.keys.count, using: &random)]
            let value = "bulk\(client)-\(sequence)-" + String(repeating: "x", count: 16 * 1024)
            let grpc = clients[sequence % clients.count]
            if await put(key, value, client: client, via: grpc, timeout: .seconds(5)) == nil {
                try? await Task.sleep(for: .milliseconds(250))
            } else {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Puts (unique values) and gets over the keys through `grpc` until stopped.
    func runClient(_ client: Int, via grpc: EtcdGRPCClient, seed: UInt64) async {
        var random = SplitMix64(seed: seed)
        var sequence = 0
        while !stopped.load(ordering: .relaxed) && !Task.isCancelled {
            let key = Self.keys[Int.random(in: 0..<Self.keys.count, using: &random)]
            let succeeded: Bool
            if Bool.random(using: &random) {
                sequence += 1
                let value = "c\(client)-\(sequence)"
                succeeded = await put(key, value, client: client, via: grpc, timeout: .seconds(2)) != nil
            } else {
                if case .success = await get(key, client: client, via: grpc, timeout: .seconds(2)) {
                    succeeded = true
                } else {
                    succeeded = false
                }
            }
            // Pacing, not synchronisation: a member without a leader fails calls at once, and a
            // client spinning on it would fill the history with puts of unknown outcome, each of
            // which multiplies the checker's search.
            if !succeeded { try? await Task.sleep(for: .milliseconds(250)) }
        }
    }
}

/// One gRPC client per `(host, port)`, each with its own connection, in order.
func withClients<Result: Sendable>(
    endpoints: [(host: String, port: Int)],
    _ body: ([EtcdGRPCClient]) async throws -> Result
) async throws -> Result {
    guard let first = endpoints.first else { return try await body([]) }
    return try await withEtcdGRPCClientAllowingNoCalls(host: first.host, port: first.port) { client in
        try await withClients(endpoints: Array(endpoints.dropFirst())) { rest in try await body([client] + rest) }
    }
}

// MARK: One round

struct NetworkFaultRound {
    typealias Member = EtcdCluster.Member

    enum Fault: Sendable {
        /// The leader cut off from both peers, then healed.
        case partitionedLeader
        /// Every link slow, then lossy, then healthy again (needs `tc`).
        case slowAndLossyLinks
    }

    let seed: UInt64
    let ip: String
    var fault: Fault = .partitionedLeader
    var flavor: ServerFlavor = .candidate
    let clock = ContinuousClock()

    /// Builds the network and the cluster, runs the scenario, removes both; returns the broken
    /// promises found (empty if none). Throws when the scenario could not be run at all.
    func run() async throws -> [String] {
        var random = SplitMix64(seed: seed)
        let lab = try await NetworkLab.create(ip: ip, random: &random)
        print("NetworkFaultTests: round seed \(seed), bridge \(lab.bridge), subnet 10.77.\(lab.subnet).0/24")
        let outcome: Swift.Result<[String], any Error>
        do {
            let placements = (1...lab.size).map {
                EtcdCluster.Placement(host: lab.address($0), launchPrefix: lab.launchPrefix($0))
            }
            outcome = .success(
                try await withEtcdCluster(flavor, keepFilesOnFailure: true, placements: placements) { cluster in
                    let problems =
                        switch fault {
                        case .partitionedLeader: try await partitionScenario(cluster, lab: lab, random: &random)
                        case .slowAndLossyLinks: try await linkScenario(cluster, lab: lab, random: &random)
                        }
                    if !problems.isEmpty {
                        // Keeps the logs (withEtcdCluster removes them only after a success).
                        throw NetworkFaultError(
                            description: problems.joined(separator: "\n") + "\nlogs kept in \(cluster.directory.path)"
                                + "\nlog tails:\n\(cluster.logTails(lines: 40))")
                    }
                    return problems
                })
        } catch {
            outcome = .failure(error)
        }
        await lab.remove()
        return try outcome.get()
    }

    private func index(of member: Member, in cluster: EtcdCluster) -> Int {
        (cluster.members.firstIndex(of: member) ?? 0) + 1
    }

    private func partitionScenario(_ cluster: EtcdCluster, lab: NetworkLab, random: inout SplitMix64) async throws
        -> [String]
    {
        let members = cluster.members
        return try await underWorkload(cluster, seeds: (0..<6).map { _ in random.next() }, bulkSeed: nil) {
            clients, workload, stamp in
            var problems: [String] = []
            guard let oldLeader = try await cluster.leader(timeout: .seconds(10)),
                let oldLeaderID = try await cluster.statuses([oldLeader]).first?.memberID
            else { throw NetworkFaultError(description: "no leader before the partition") }
            let old = index(of: oldLeader, in: cluster)
            let majority = members.filter { $0 != oldLeader }
            let others = majority.map { index(of: $0, in: cluster) }
            print("\(stamp()) \(oldLeader.name) (\(oldLeader.host)) leads; cutting it off from its peers")

            for other in others { try await lab.partition(old, other) }
            let partitioned = clock.now
            // A read through the old leader while it still believes it leads: its ReadIndex
            // needs a heartbeat round with a quorum, so it should time out; whatever it
            // answers goes into the history, where the checker judges it.
            let oldClient = clients[old - 1]
            async let earlyRead = workload.get(
                NetworkFaultWorkload.keys[0], client: 103, via: oldClient, timeout: .seconds(3))

            // The majority elects another leader within a few election timeouts (1 s each);
            // real etcd 3.4 (no pre-vote) has been seen to need several rounds of split votes,
            // and a loaded CI machine delays it further, hence the margin.
            var newLeaderID: UInt64 = 0
            let elected = try await poll(timeout: .seconds(15), interval: .milliseconds(100)) {
                let statuses = try await cluster.statuses(majority)
                let leaders = Set(statuses.map(\.leader))
                guard statuses.count == 2, leaders.count == 1, let leader = leaders.first, leader != 0,
                    leader != oldLeaderID
                else { return false }
                newLeaderID = leader
                return true
            }
            if elected {
                let elapsed = clock.now - partitioned
                print("\(stamp()) the majority elected \(String(newLeaderID, radix: 16)) in \(elapsed)")
            } else {
                problems.append(
                    "the majority elected no new leader within 15 s of the partition: "
                        + "\(try await cluster.statuses(majority))")
            }

            // The old leader steps down once it has not heard from a quorum for an election
            // timeout (CheckQuorum).
            let steppedDown = try await poll(timeout: .seconds(15), interval: .milliseconds(100)) {
                guard let status = try await cluster.statuses([oldLeader]).first else { return false }
                return status.leader != oldLeaderID
            }
            if steppedDown {
                print("\(stamp()) \(oldLeader.name) stepped down \(clock.now - partitioned) after the partition")
            } else {
                problems.append(
                    "\(oldLeader.name) still says it leads 15 s after the partition: "
                        + "\(try await cluster.statuses([oldLeader]))")
            }

            // Writes through the majority succeed.
            let majorityClient = clients[others[0] - 1]
            let marker = "netfault-marker-\(seed)"
            let markerKey = NetworkFaultWorkload.keys[0]
            var markerRevision: Int64?
            _ = await poll(timeout: .seconds(10), interval: .milliseconds(200)) {
                markerRevision = await workload.put(
                    markerKey, marker, client: 100, via: majorityClient, timeout: .seconds(3))
                return markerRevision != nil
            }
            if let markerRevision {
                print("\(stamp()) a put through \(majority[0].name) succeeded at revision \(markerRevision)")
            } else {
                problems.append("no put through the majority (\(majority[0].name)) succeeded while partitioned")
            }

            switch await earlyRead {
            case .success(let value):
                print(
                    "\(stamp()) a read through \(oldLeader.name) right after the partition answered "
                        + (value ?? "absent"))
            case .failure(let error):
                print("\(stamp()) a read through \(oldLeader.name) right after the partition failed: \(error)")
            }
            // The old leader serves no linearizable read: it must fail rather than answer
            // (an answer could only be stale, as it cannot have seen the marker).
            switch await workload.get(markerKey, client: 101, via: oldClient, timeout: .seconds(3)) {
            case .success(let value):
                problems.append(
                    "\(oldLeader.name), cut off, answered a linearizable read of \(markerKey) with "
                        + "\(value ?? "absent") (the majority wrote \(marker))")
            case .failure(let error):
                print("\(stamp()) a linearizable read through \(oldLeader.name) failed as it must: \(error)")
            }
            // More workload while partitioned.
            let acknowledgedBefore = workload.acknowledged.load(ordering: .relaxed)
            _ = await poll(timeout: .seconds(5)) {
                workload.acknowledged.load(ordering: .relaxed) >= acknowledgedBefore + 100
            }
            print(
                "\(stamp()) \(workload.acknowledged.load(ordering: .relaxed) - acknowledgedBefore) more "
                    + "operations answered while partitioned; healing")

            for other in others { try await lab.heal(old, other) }
            let healed = clock.now

            // All three agree on one leader again, and the old leader takes writes.
            let agreed = try await cluster.leader(timeout: .seconds(15))
            if agreed == nil {
                let statuses = try await cluster.statuses()
                problems.append("the members agree on no leader 15 s after the heal: \(statuses)")
            }
            let rejoined = await poll(timeout: .seconds(15), interval: .milliseconds(200)) {
                await workload.put(
                    markerKey, "\(marker)-healed", client: 102, via: oldClient, timeout: .seconds(3)) != nil
            }
            if !rejoined { problems.append("no put through \(oldLeader.name) succeeded within 15 s of the heal") }
            print(
                "\(stamp()) healed: \(agreed?.name ?? "no member") leads, a put through \(oldLeader.name) "
                    + "\(rejoined ? "succeeded" : "failed") \(clock.now - healed) after the heal")

            return problems
        }
    }

    /// Every link slow for a while, then lossy, then healthy: the cluster keeps answering
    /// through both (if more slowly), and once the links are healthy the members agree, every
    /// acknowledged put is stored and the history is linearizable.
    private func linkScenario(_ cluster: EtcdCluster, lab: NetworkLab, random: inout SplitMix64) async throws
        -> [String]
    {
        let members = cluster.members
        let seeds = (0..<6).map { _ in random.next() }
        // Puts of values too big for a packet: bursts for the queues to hold back (slow links)
        // or drop (lossy ones).
        return try await underWorkload(cluster, seeds: seeds, bulkSeed: random.next()) { clients, workload, stamp in
            var problems: [String] = []

            for shaping in [LinkShaping.slow, .lossy] {
                print("\(stamp()) \(shaping) on both directions of every member's link")
                for index in 1...lab.size { try await lab.shape(index, shaping) }
                let answeredBefore = workload.acknowledged.load(ordering: .relaxed)
                let latencyBefore = workload.slowestAnswer.load(ordering: .relaxed)
                try await Task.sleep(for: .seconds(8))
                let answered = workload.acknowledged.load(ordering: .relaxed) - answeredBefore
                var dropped = 0
                for index in 1...lab.size { dropped += try await lab.unshape(index) }
                let slowest = workload.slowestAnswer.load(ordering: .relaxed)
                print(
                    "\(stamp()) \(shaping.name) removed: \(answered) operations answered in 8 s, "
                        + "\(dropped) packets dropped, slowest answer so far \(slowest) ms (\(latencyBefore) ms before)")
                // Both settings leave room for the cluster to work, only slowly.
                if answered < 10 {
                    problems.append("only \(answered) operations were answered in 8 s of \(shaping)")
                }
                // The faults happened: a 16 KiB put needs over 100 ms to cross a 1 Mbit/s link.
                if shaping == .slow && slowest < 100 {
                    problems.append("no answer took 100 ms or more during \(shaping): the delay was not exercised")
                }
                if shaping == .lossy && dropped == 0 {
                    problems.append("\(shaping) dropped no packet: the loss was not exercised")
                }
            }

            // Healthy again: one leader, and writes through every member.
            if try await cluster.leader(timeout: .seconds(15)) == nil {
                problems.append("the members agree on no leader 15 s after the links were healthy again")
            }
            for (index, client) in clients.enumerated() {
                let written = await poll(timeout: .seconds(15), interval: .milliseconds(200)) {
                    await workload.put(
                        NetworkFaultWorkload.keys[0], "healthy-\(index)", client: 110 + index, via: client,
                        timeout: .seconds(3)) != nil
                }
                if !written {
                    problems.append("no put through \(members[index].name) succeeded within 15 s of healthy links")
                }
            }
            return problems
        }
    }

    /// Runs `fault` once the workload (two clients per member, each with its own history client
    /// ID, and with `bulkSeed` the bulk putter too) has made progress, then stops the workload
    /// and adds the verdicts to what `fault` found.
    private func underWorkload(
        _ cluster: EtcdCluster, seeds: [UInt64], bulkSeed: UInt64?,
        _ fault: ([EtcdGRPCClient], NetworkFaultWorkload, @escaping @Sendable () -> String) async throws -> [String]
    ) async throws -> [String] {
        let members = cluster.members
        let workload = NetworkFaultWorkload()
        let clock = self.clock
        let begin = clock.now
        let stamp: @Sendable () -> String = { "[\(clock.now - begin)]" }
        return try await withClients(endpoints: members.map { ($0.host, $0.clientPort) }) { clients in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (client, seed) in seeds.enumerated() {
                    let grpc = clients[client % clients.count]
                    group.addTask { await workload.runClient(client, via: grpc, seed: seed) }
                }
                if let bulkSeed {
                    group.addTask { await workload.runBulkClient(200, via: clients, seed: bulkSeed) }
                }
                guard
                    await poll(timeout: .seconds(10), until: { workload.acknowledged.load(ordering: .relaxed) >= 50 })
                else { throw NetworkFaultError(description: "the workload made no progress before the fault") }
                let problems = try await fault(clients, workload, stamp)
                workload.stopped.store(true, ordering: .relaxed)
                try await group.waitForAll()
                return problems + (await verdicts(workload, clients: clients, members: members, stamp: stamp()))
            }
        }
    }

    /// The end of every round, once the workload stopped: the members reach one revision, each
    /// stores every acknowledged put, and the history is linearizable.
    private func verdicts(_ workload: NetworkFaultWorkload, clients: [EtcdGRPCClient], members: [Member], stamp: String)
        async -> [String]
    {
        var problems = await checkRevisionsAgree(clients: clients, members: members)
        problems += await checkAcknowledgedPuts(workload, clients: clients, members: members)
        let history = workload.recorder.history()
        let verdict = checkLinearizable(history, model: EtcdKVModel(), timeout: .seconds(30))
        print(
            "\(stamp) history: \(history.count) operations, \(history.filter(\.outcomeUnknown).count) of "
                + "unknown outcome, \(workload.puts.withLock { $0.count }) acknowledged puts: "
                + (verdict.isOK ? "linearizable" : "NOT OK"))
        if !verdict.isOK { problems.append("the history is not linearizable: \(verdict)") }
        return problems
    }

    /// Once the workload stopped, every member reaches the same revision (serializable reads,
    /// each member's own view).
    private func checkRevisionsAgree(clients: [EtcdGRPCClient], members: [Member]) async -> [String] {
        var revisions: [Int64] = []
        let agreed = await poll(timeout: .seconds(10), interval: .milliseconds(100)) {
            revisions = []
            for (member, client) in zip(members, clients) {
                let request = KVRequest.range(NetworkFaultWorkload.keys[0]) { $0.serializable = true }
                guard case .success(let response) = await readBack(request, from: member, via: client, timeout: .seconds(2))
                else { return false }
                revisions.append(response.header.revision)
            }
            return Set(revisions).count == 1
        }
        let shown = zip(members.map(\.name), revisions).map { "\($0)=\($1)" }
        print("NetworkFaultTests: revisions after the heal: \(shown)")
        return agreed ? [] : ["the members do not reach one revision within 10 s of the end: \(revisions)"]
    }

    /// One read of the final checks: through the workload's client, and if that fails, through
    /// a new client with a connection of its own, twice at most. The workload's connection went
    /// through the partition and may be gone (real etcd's side once closed its stream
    /// unexpectedly), which says nothing about what the member stores.
    private func readBack(
        _ request: Etcdserverpb_RangeRequest, from member: Member, via client: EtcdGRPCClient, timeout: Duration
    ) async -> Result<Etcdserverpb_RangeResponse, any Error> {
        let options = NetworkFaultWorkload.options(timeout: timeout)
        var lastError: any Error
        do {
            return .success(try await client.kv.range(request, options: options))
        } catch {
            lastError = error
        }
        for _ in 0..<2 {
            do {
                return .success(
                    try await withEtcdGRPCClient(host: member.host, port: member.clientPort) { fresh in
                        try await fresh.kv.range(request, options: options)
                    })
            } catch {
                lastError = error
            }
        }
        return .failure(lastError)
    }

    /// Every acknowledged put is stored at its revision on every member.
    private func checkAcknowledgedPuts(
        _ workload: NetworkFaultWorkload, clients: [EtcdGRPCClient], members: [Member]
    ) async -> [String] {
        var problems: [String] = []
        let puts = workload.puts.withLock { $0 }
        for (member, client) in zip(members, clients) {
            for put in puts {
                let request = KVRequest.range(put.key) { $0.revision = put.revision }
                // A dropped connection (seen once against real etcd) is retried on a new one, not a verdict.
                let response: Etcdserverpb_RangeResponse
                switch await readBack(request, from: member, via: client, timeout: .seconds(5)) {
                case .success(let answer):
                    response = answer
                case .failure(let error):
                    problems.append(
                        "\(member.name): reading acknowledged put(\(put.key), \(put.value)) at revision "
                            + "\(put.revision) failed: \(error)")
                    if problems.count >= 20 { return problems }
                    continue
                }
                let kv = response.kvs.first
                let value = kv.map { String(decoding: $0.value, as: UTF8.self) }
                if value != put.value || kv?.modRevision != put.revision {
                    problems.append(
                        "\(member.name): acknowledged put(\(put.key), \(put.value)) at revision \(put.revision) reads "
                            + (kv.map { "\(value ?? "") mod \($0.modRevision)" } ?? "absent"))
                    if problems.count >= 20 { return problems }
                }
            }
        }
        return problems
    }
}
