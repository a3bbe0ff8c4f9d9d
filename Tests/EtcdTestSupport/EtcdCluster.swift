public import Foundation
import Synchronization

/// A cluster of etcd servers (real etcd or swift-etcd) on 127.0.0.1, each member a process of its
/// own with its data directory, client port and peer port, started together as etcd's Procfile
/// starts its three (`--initial-cluster-state new`, one token).
///
/// Start one with ``withEtcdCluster(_:size:extraArguments:_:)``, which stops every process and
/// removes every file however the test ends.
public final class EtcdCluster: Sendable {
    public let flavor: ServerFlavor
    public let directory: TemporaryDirectory
    public let token: String
    private let executable: URL
    private let extraArguments: [String]
    /// The schemes of the members' client and peer URLs (`https` for TLS).
    public let schemes: Schemes
    /// Flags every etcdctl run against the cluster gets (TLS's `--cacert`, a client certificate).
    public let etcdctlArguments: [String]
    private let state: Mutex<State>

    /// The URL schemes a cluster's members listen with.
    public struct Schemes: Sendable, Hashable {
        public var client: String
        public var peer: String

        public init(client: String = "http", peer: String = "http") {
            self.client = client
            self.peer = peer
        }
    }

    /// One member as the cluster launched it.
    public struct Member: Sendable, Hashable {
        public var name: String
        public var clientPort: Int
        public var peerPort: Int
        /// The address both listeners bind, 127.0.0.1 unless the cluster was given hosts.
        public var host: String = "127.0.0.1"
        /// Words run before the server's own command line, e.g. `ip netns exec <namespace>` to
        /// launch the member inside a network namespace; empty to run it directly.
        public var launchPrefix: [String] = []
        public var schemes = Schemes()

        public var clientEndpoint: String { "\(host):\(clientPort)" }
        public var clientURL: String { "\(schemes.client)://\(clientEndpoint)" }
        public var peerURL: String { "\(schemes.peer)://\(host):\(peerPort)" }
    }

    /// Where a member runs when it is not on 127.0.0.1 with ports of its own: an address of its
    /// own (the ports may then be fixed, as each address has its own) and a launch prefix.
    public struct Placement: Sendable, Hashable {
        public var host: String
        public var clientPort: Int
        public var peerPort: Int
        public var launchPrefix: [String]

        public init(host: String, clientPort: Int = 2379, peerPort: Int = 2380, launchPrefix: [String] = []) {
            self.host = host
            self.clientPort = clientPort
            self.peerPort = peerPort
            self.launchPrefix = launchPrefix
        }
    }

    private struct State {
        var members: [Member]
        var children: [String: ChildProcess] = [:]
        var launches: [String: Int] = [:]
        /// `--initial-cluster` of the members started as the cluster, and later as each joined.
        var initialCluster: [String: String] = [:]
    }

    private init(
        flavor: ServerFlavor, directory: TemporaryDirectory, token: String, executable: URL, extraArguments: [String],
        members: [Member], schemes: Schemes, etcdctlArguments: [String]
    ) {
        self.schemes = schemes
        self.etcdctlArguments = etcdctlArguments
        self.flavor = flavor
        self.directory = directory
        self.token = token
        self.executable = executable
        self.extraArguments = extraArguments
        state = Mutex(State(members: members))
    }

    /// Every member, running or not, in the order they were created.
    public var members: [Member] { state.withLock { $0.members } }

    /// Members whose process runs.
    public var runningMembers: [Member] {
        state.withLock { state in state.members.filter { state.children[$0.name] != nil } }
    }

    /// `--endpoints` for every member (or those given).
    public func endpoints(_ members: [Member]? = nil) -> String {
        (members ?? self.members).map(\.clientEndpoint).joined(separator: ",")
    }

    /// An etcdctl pointed at every member (or those given).
    public func etcdctl(_ members: [Member]? = nil, timeout: Duration = .seconds(20)) -> Etcdctl {
        Etcdctl(endpoints: endpoints(members), timeout: timeout, globalArguments: etcdctlArguments)
    }

    public func member(named name: String) -> Member? { members.first { $0.name == name } }

    /// The member an `endpoint status` entry names: by its whole endpoint, else by the port alone
    /// (members on 127.0.0.1 have ports of their own).
    public func member(at endpoint: String) -> Member? {
        members.first { $0.clientEndpoint == endpoint } ?? members.first { endpoint.hasSuffix(":\($0.clientPort)") }
    }

    public func process(of member: Member) -> ChildProcess? { state.withLock { $0.children[member.name] } }

    public func dataDirectory(of member: Member) -> URL { directory.appending("\(member.name).data") }

    public func logFile(of member: Member) -> URL {
        let launch = state.withLock { $0.launches[member.name] ?? 0 }
        return directory.appending("\(member.name)-\(launch).log")
    }

    /// The tail of every member's current log, for failure messages.
    public func logTails(lines: Int = 30) -> String {
        members.map { member in
            let log = String(decoding: (try? Data(contentsOf: logFile(of: member))) ?? Data(), as: UTF8.self)
            return "--- \(member.name) ---\n" + log.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    // MARK: Starting and stopping

    /// Creates `size` members with fresh ports and starts them together; returns once every member
    /// answers `endpoint health`.
    static func start(
        _ flavor: ServerFlavor, size: Int, extraArguments: [String], in directory: TemporaryDirectory,
        startTimeout: Duration, placements: [Placement]? = nil, schemes: Schemes = Schemes(), etcdctlArguments: [String] = []
    ) async throws -> EtcdCluster {
        let executable = try flavor.executable()
        var members: [Member] = []
        var taken: Set<Int> = []
        if let placements {
            for (index, placement) in placements.enumerated() {
                members.append(
                    Member(
                        name: "infra\(index + 1)", clientPort: placement.clientPort, peerPort: placement.peerPort,
                        host: placement.host, launchPrefix: placement.launchPrefix, schemes: schemes))
            }
        }
        for index in 1...size where placements == nil {
            var ports: [Int] = []
            while ports.count < 2 {
                let port = try LoopbackPort.allocate()
                if taken.insert(port).inserted { ports.append(port) }
            }
            members.append(Member(name: "infra\(index)", clientPort: ports[0], peerPort: ports[1], schemes: schemes))
        }
        let cluster = EtcdCluster(
            flavor: flavor, directory: directory, token: "etcd-cluster-\(UInt32.random(in: 1 ... .max))",
            executable: executable, extraArguments: extraArguments, members: members, schemes: schemes,
            etcdctlArguments: etcdctlArguments)
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        do {
            for member in members {
                try cluster.launch(member, initialCluster: initial, state: "new")
            }
            try await cluster.waitUntilHealthy(members, timeout: startTimeout)
        } catch {
            await cluster.stopAll()
            throw error
        }
        return cluster
    }

    private func arguments(for member: Member, initialCluster: String, state clusterState: String) -> [String] {
        [
            "--name=\(member.name)",
            "--data-dir=\(dataDirectory(of: member).path)",
            "--listen-client-urls=\(member.clientURL)",
            "--advertise-client-urls=\(member.clientURL)",
            "--listen-peer-urls=\(member.peerURL)",
            "--initial-advertise-peer-urls=\(member.peerURL)",
            "--initial-cluster-token=\(token)",
            "--initial-cluster=\(initialCluster)",
            "--initial-cluster-state=\(clusterState)",
            "--log-level=info",
        ] + extraArguments
    }

    private func launch(_ member: Member, initialCluster: String, state clusterState: String) throws {
        let launch = state.withLock { state -> Int in
            state.launches[member.name, default: 0] += 1
            state.initialCluster[member.name] = initialCluster
            return state.launches[member.name] ?? 1
        }
        let log = directory.appending("\(member.name)-\(launch).log")
        var command = [executable.path] + arguments(for: member, initialCluster: initialCluster, state: clusterState)
        if !member.launchPrefix.isEmpty { command = member.launchPrefix + command }
        let child = try ChildProcess(
            executable: URL(fileURLWithPath: command[0]), arguments: Array(command.dropFirst()),
            standardOutput: log, standardError: log)
        state.withLock { $0.children[member.name] = child }
    }

    /// Waits until each of `members` answers `endpoint health` (a linearizable read, so the
    /// cluster has a leader and the member is caught up); fails early if one exits.
    public func waitUntilHealthy(_ members: [Member]? = nil, timeout: Duration = .seconds(30)) async throws {
        let waiting = members ?? runningMembers
        var lastAnswer = ""
        let healthy = try await poll(timeout: timeout, interval: .milliseconds(100)) {
            for member in waiting {
                if let exit = process(of: member)?.exitStatus {
                    throw EtcdTestSupportError.serverDidNotStart("\(member.name) exited (\(exit))\n\(logTails())")
                }
                let result = try await etcdctl([member], timeout: .seconds(5))
                    .run("endpoint", "health", "--command-timeout=2s", "--dial-timeout=1s")
                guard EtcdProcess.isHealthy(result) else {
                    lastAnswer = "\(member.name) (\(member.clientEndpoint)): \(result)"
                    return false
                }
            }
            return true
        }
        guard healthy else {
            throw EtcdTestSupportError.serverDidNotStart(
                "\(flavor) cluster members \(waiting.map(\.name)) not healthy within \(timeout); last answer from "
                    + "\(lastAnswer)\n\(logTails())")
        }
    }

    /// Kills `member` with SIGKILL, as a crash would; its data stays.
    @discardableResult
    public func kill(_ member: Member) async -> ProcessExit? {
        guard let child = state.withLock({ $0.children.removeValue(forKey: member.name) }) else { return nil }
        return await child.kill()
    }

    /// Stops `member` with SIGTERM (SIGKILL after 10 s); its data stays.
    @discardableResult
    public func stop(_ member: Member) async -> ProcessExit? {
        guard let child = state.withLock({ $0.children.removeValue(forKey: member.name) }) else { return nil }
        return await child.terminate(gracePeriod: .seconds(10))
    }

    /// Starts a stopped or killed member again on its data directory and ports; with `wait`,
    /// returns once it is healthy.
    public func restart(_ member: Member, wait: Bool = true) async throws {
        guard process(of: member) == nil else { return }
        let (initial, clusterState) = state.withLock { state in
            (state.initialCluster[member.name] ?? "", "new")
        }
        try launch(member, initialCluster: initial, state: clusterState)
        if wait { try await waitUntilHealthy([member]) }
    }

    /// Creates a member with fresh ports (not yet in the cluster: add it first with etcdctl
    /// `member add`), for ``join(_:initialCluster:)``.
    public func newMember(named name: String) throws -> Member {
        var ports: [Int] = []
        let used = Set(members.flatMap { [$0.clientPort, $0.peerPort] })
        while ports.count < 2 {
            let port = try LoopbackPort.allocate()
            if !used.contains(port) && !ports.contains(port) { ports.append(port) }
        }
        let member = Member(name: name, clientPort: ports[0], peerPort: ports[1], schemes: schemes)
        state.withLock { $0.members.append(member) }
        return member
    }

    /// Starts `member` with `--initial-cluster-state existing` and the `--initial-cluster` that
    /// `member add` printed; with `wait`, returns once it is healthy.
    public func join(_ member: Member, initialCluster: String, wait: Bool = true) async throws {
        try launch(member, initialCluster: initialCluster, state: "existing")
        if wait { try await waitUntilHealthy([member]) }
    }

    /// Forgets a member that was removed (its process must be stopped).
    public func forget(_ member: Member) {
        state.withLock { state in
            state.members.removeAll { $0 == member }
            state.children[member.name] = nil
        }
    }

    /// Stops every member (SIGTERM, SIGKILL after the grace period).
    public func stopAll() async {
        let children = state.withLock { state in
            defer { state.children = [:] }
            return Array(state.children.values)
        }
        await withTaskGroup(of: Void.self) { group in
            for child in children { group.addTask { await child.terminate(gracePeriod: .seconds(10)) } }
        }
    }

    // MARK: Observing

    /// Each running member's view from `endpoint status -w json`: member ID, leader, term, raft index.
    public struct MemberStatus: Sendable, Hashable {
        public var endpoint: String
        public var memberID: UInt64
        public var leader: UInt64
        public var term: UInt64
        public var raftIndex: UInt64
        public var isLearner: Bool
    }

    public func statuses(_ members: [Member]? = nil) async throws -> [MemberStatus] {
        let result = try await etcdctl(members ?? runningMembers, timeout: .seconds(10))
            .run("endpoint", "status", "-w", "json", "--command-timeout=3s", "--dial-timeout=1s")
        // A member that does not answer is left out (etcdctl reports it on standard error).
        guard let data = result.standardOutput.data(using: .utf8),
            let entries = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return [] }
        return entries.compactMap { entry in
            guard let endpoint = entry["Endpoint"] as? String, let status = entry["Status"] as? [String: Any],
                let header = status["header"] as? [String: Any]
            else { return nil }
            func number(_ value: Any?) -> UInt64 { (value as? NSNumber)?.uint64Value ?? 0 }
            return MemberStatus(
                endpoint: endpoint, memberID: number(header["member_id"]), leader: number(status["leader"]),
                term: number(header["raft_term"]), raftIndex: number(status["raftIndex"]),
                isLearner: (status["isLearner"] as? Bool) ?? false)
        }
    }

    /// The running member that leads, once all that answer agree on one; nil if none within
    /// `timeout`.
    public func leader(among members: [Member]? = nil, timeout: Duration = .seconds(15)) async throws -> Member? {
        var found: Member?
        _ = try await poll(timeout: timeout, interval: .milliseconds(100)) {
            let statuses = try await self.statuses(members)
            let leaders = Set(statuses.map(\.leader))
            guard leaders.count == 1, let leader = leaders.first, leader != 0,
                let status = statuses.first(where: { $0.memberID == leader }),
                let member = self.member(at: status.endpoint)
            else { return false }
            found = member
            return true
        }
        return found
    }
}

/// Starts a cluster of `size` members of `flavor` (or one per entry of `placements`, each on its
/// own address and launched through its prefix), runs `body` with it, then stops every member and
/// removes the files, whether `body` returns or throws; with `keepFilesOnFailure`, a failed start
/// or a `body` that throws leaves the data directories and logs (``EtcdCluster/directory``) for
/// the failure's investigation. Clusters run one at a time in a test process, each holding one of
/// the shared server slots.
public func withEtcdCluster<Result: Sendable>(
    _ flavor: ServerFlavor,
    size: Int = 3,
    extraArguments: [String] = [],
    startTimeout: Duration = .seconds(40),
    keepFilesOnFailure: Bool = false,
    placements: [EtcdCluster.Placement]? = nil,
    schemes: EtcdCluster.Schemes = EtcdCluster.Schemes(),
    etcdctlArguments: [String] = [],
    _ body: (EtcdCluster) async throws -> Result
) async throws -> Result {
    // Off the cooperative pool, which the rest of the test run may hold for seconds at a time.
    try await withTaskExecutorPreference(HarnessExecutor.shared) {
        try await runCluster(
            flavor, size: size, extraArguments: extraArguments, startTimeout: startTimeout,
            keepFilesOnFailure: keepFilesOnFailure, placements: placements, schemes: schemes,
            etcdctlArguments: etcdctlArguments, body)
    }
}

private func runCluster<Result: Sendable>(
    _ flavor: ServerFlavor,
    size: Int,
    extraArguments: [String],
    startTimeout: Duration,
    keepFilesOnFailure: Bool,
    placements: [EtcdCluster.Placement]?,
    schemes: EtcdCluster.Schemes,
    etcdctlArguments: [String],
    _ body: (EtcdCluster) async throws -> Result
) async throws -> Result {
    try await clusterSlots.withPermit {
        try await ServerSlots.shared.withPermit {
            let directory = try TemporaryDirectory(prefix: "etcd-cluster-\(flavor == .realEtcd ? "real" : "swift")")
            let outcome: Swift.Result<Result, any Error>
            do {
                let cluster = try await EtcdCluster.start(
                    flavor, size: size, extraArguments: extraArguments, in: directory, startTimeout: startTimeout,
                    placements: placements, schemes: schemes, etcdctlArguments: etcdctlArguments)
                do {
                    outcome = .success(try await body(cluster))
                } catch {
                    outcome = .failure(error)
                }
                await cluster.stopAll()
            } catch {
                // The start failed; it stopped whatever it launched.
                outcome = .failure(error)
            }
            if case .success = outcome {
                directory.remove()
            } else if !keepFilesOnFailure {
                directory.remove()
            }
            return try outcome.get()
        }
    }
}

/// One cluster at a time: three or more processes each, on two cores.
private let clusterSlots = ServerSlots(permits: 1)
