import EtcdAPI
import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

/// Three-member clusters of the real binary, started as etcd's Procfile starts them, with the same
/// scenario run on real etcd and compared where the two must agree.
@Suite("Three-member clusters", .serialized)
struct ClusterTests {
    /// Runs `scenario` on a three-member cluster of each flavor and returns each one's record.
    private func sideBySide(
        extraArguments: [String] = [],
        _ scenario: @escaping @Sendable (EtcdCluster) async throws -> [String]
    ) async throws -> (etcd: [String], candidate: [String]) {
        let etcd = try await withEtcdCluster(.realEtcd, extraArguments: extraArguments, scenario)
        let candidate = try await withEtcdCluster(.candidate, extraArguments: extraArguments, scenario)
        return (etcd, candidate)
    }

    /// etcdctl's output with the cluster's own IDs, ports and timings taken out: clientv3's retry
    /// warnings (timestamps, client IDs) are dropped, IDs (printed without leading zeros) and
    /// ports replaced, and lines sorted (etcd lists members in map order).
    private static func normalized(_ text: String, _ cluster: EtcdCluster) -> String {
        var text = text
        for (index, member) in cluster.members.enumerated() {
            text = text.replacingOccurrences(of: "\(member.clientPort)", with: "<client\(index + 1)>")
            text = text.replacingOccurrences(of: "\(member.peerPort)", with: "<peer\(index + 1)>")
        }
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("{\"level\":\"warn\"") }.map { line in
            line.replacingOccurrences(of: " *\\b[0-9a-f]{12,16}\\b", with: " <id>", options: .regularExpression)
                .trimmingCharacters(in: .whitespaces)
        }
        return lines.sorted().joined(separator: "\n")
    }

    /// The HashKV of every member at `revision` (`endpoint hashkv --cluster`), in member order.
    static func hashKVs(_ etcdctl: Etcdctl, revision: Int64) async throws -> [UInt64] {
        let result = try await etcdctl.run("endpoint", "hashkv", "--cluster", "--rev=\(revision)", "-w", "json")
        let answers = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [[String: Any]] ?? []
        return answers.sorted { "\($0["Endpoint"] ?? "")" < "\($1["Endpoint"] ?? "")" }.compactMap {
            (($0["HashKV"] as? [String: Any])?["hash"] as? NSNumber)?.uint64Value
        }
    }

    /// `--initial-cluster` as etcdctl prints it, in a stable order (etcd's is map order).
    private static func sortedCluster(_ text: String) -> String {
        text.split(separator: ",").sorted().joined(separator: ",")
    }

    @Test("three members list each other, agree on one leader, and take writes through any member")
    func startWriteRead() async throws {
        let (etcd, candidate) = try await sideBySide { cluster in
            var record: [String] = []
            let all = cluster.etcdctl()
            let list = try await all.run("member", "list")
            record.append("member list: \(Self.normalized(list.standardOutput, cluster))")
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            record.append("one leader: \(cluster.members.contains(leader))")
            for (index, member) in cluster.members.enumerated() {
                let put = try await cluster.etcdctl([member]).run("put", "key\(index)", "through-\(member.name)")
                record.append("put via \(member.name): \(put.standardOutput.trimmed) \(put.standardError.trimmed)")
            }
            for member in cluster.members {
                let one = cluster.etcdctl([member])
                let linearizable = try await one.run("get", "key", "--prefix")
                record.append("get via \(member.name): \(linearizable.standardOutput.trimmed)")
                // A serializable read is local; the member applies what was committed soon after.
                let caughtUp = try await poll(timeout: .seconds(5), interval: .milliseconds(50)) {
                    let serializable = try await one.run("get", "key", "--prefix", "--consistency=s")
                    return serializable.standardOutput == linearizable.standardOutput
                }
                record.append("serializable via \(member.name) catches up: \(caughtUp)")
            }
            let status = try await all.run("endpoint", "status", "--cluster", "-w", "json")
            let statuses = try JSONSerialization.jsonObject(with: Data(status.standardOutput.utf8)) as? [[String: Any]] ?? []
            record.append("endpoint status --cluster answers: \(statuses.count)")
            let leaders = Set(statuses.compactMap { ($0["Status"] as? [String: Any])?["leader"] as? NSNumber })
            record.append("endpoint status --cluster leaders: \(leaders.count)")
            let revisions = Set(statuses.compactMap {
                (($0["Status"] as? [String: Any])?["header"] as? [String: Any])?["revision"] as? NSNumber
            })
            record.append("endpoint status --cluster revisions: \(revisions.map(\.int64Value).sorted())")
            // A fresh cluster is at index 8 on etcd (three members' entries, the leader's empty
            // entry, three published attributes, the cluster version), then one per write.
            let indexes = Set(statuses.compactMap { ($0["Status"] as? [String: Any])?["raftIndex"] as? NSNumber })
            record.append("endpoint status --cluster raft indexes: \(indexes.map(\.int64Value).sorted())")
            // Every member hashes the same history to the same value, and to Go etcd's value.
            let hashes = try await Self.hashKVs(all, revision: 4)
            record.append("endpoint hashkv --cluster --rev=4: \(hashes.count) answers, hashes \(Set(hashes).sorted())")
            // Peer traffic in /metrics, per peer, as etcd's dashboards chart it.
            let metrics = try await Curl.request("GET", url: cluster.members[0].clientURL + "/metrics")
            let lines = metrics.body.split(separator: "\n")
            for name in ["etcd_network_peer_sent_bytes_total{To=", "etcd_network_peer_received_bytes_total{From="] {
                // (A follower talks to the leader only; etcd's also probes every peer, so how many
                // peers show traffic differs.)
                let peers = lines.filter { $0.hasPrefix(name) && !$0.hasSuffix(" 0") }.count
                record.append("/metrics \(name)...} for some peer: \(peers > 0)")
            }
            return record
        }
        #expect(candidate == etcd)
    }

    @Test("a killed leader is replaced within a few election timeouts, writes carry on, and it catches up on restart")
    func leaderFailover() async throws {
        try await withEtcdCluster(.candidate) { cluster in
            let all = cluster.etcdctl()
            #expect(try await all.run("put", "before", "1").succeeded)
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            await cluster.kill(leader)
            let others = cluster.members.filter { $0 != leader }
            let clock = ContinuousClock()
            let killed = clock.now
            let newLeader = try #require(try await cluster.leader(among: others), "no new leader\n\(cluster.logTails())")
            #expect(newLeader != leader)
            // Election timeout 1 s by default: a new leader within a few of them.
            #expect(killed.duration(to: clock.now) < .seconds(5))
            for index in 0..<20 {
                let put = try await cluster.etcdctl(others).run("put", "during", "\(index)")
                #expect(put.succeeded, "\(put)")
            }
            try await cluster.restart(leader)
            let back = cluster.etcdctl([leader])
            let caughtUp = try await poll(timeout: .seconds(10), interval: .milliseconds(100)) {
                try await back.run("get", "during", "--print-value-only", "--consistency=s").standardOutput.trimmed == "19"
            }
            #expect(caughtUp, "\(cluster.logTails())")
            #expect(try await back.run("get", "before", "--print-value-only").standardOutput.trimmed == "1")
        }
    }

    @Test("learners join, get promoted once in sync, members are updated and removed, leadership moves; errors as etcd's")
    func membershipChanges() async throws {
        let (etcd, candidate) = try await sideBySide { cluster in
            var record: [String] = []
            let all = cluster.etcdctl()
            let newcomer = try cluster.newMember(named: "infra4")
            // etcd refuses any member change until this member has been connected to every voter
            // for 5 s ("etcdserver: unhealthy cluster"), so a fresh cluster is retried.
            var add = try await all.run("member", "add", "infra4", "--peer-urls=\(newcomer.peerURL)", "--learner")
            let early = add.succeeded ? "accepted" : Self.normalized(add.standardError, cluster)
            record.append("add learner at once: \(early.contains("unhealthy cluster") || early == "accepted")")
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(15))
            while !add.succeeded && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
                add = try await all.run("member", "add", "infra4", "--peer-urls=\(newcomer.peerURL)", "--learner")
            }
            record.append("add learner: \(add.succeeded)")
            let initialCluster = add.standardOutput.split(separator: "\n")
                .first { $0.hasPrefix("ETCD_INITIAL_CLUSTER=") }
                .map { String($0.dropFirst("ETCD_INITIAL_CLUSTER=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            record.append("add printed an initial cluster: \(Self.normalized(Self.sortedCluster(initialCluster ?? "none"), cluster))")
            let listed = try await all.run("member", "list", "-w", "json")
            let members = (try JSONSerialization.jsonObject(with: Data(listed.standardOutput.utf8)) as? [String: Any])?["members"]
                as? [[String: Any]] ?? []
            let learner = members.first { ($0["isLearner"] as? Bool) == true }
            let learnerID = String((learner?["ID"] as? NSNumber)?.uint64Value ?? 0, radix: 16)
            record.append("listed learners: \(members.filter { ($0["isLearner"] as? Bool) == true }.count)")
            // A second learner is one too many (etcd's default --experimental-max-learners is 1).
            let second = try await all.run("member", "add", "extra", "--peer-urls=http://127.0.0.1:1", "--learner")
            record.append("second learner: \(Self.normalized(second.standardError, cluster))")
            let notLearner = try await all.run("member", "promote", String(cluster.members[0].name.count, radix: 16))
            record.append("promote unknown: \(Self.normalized(notLearner.standardError, cluster))")
            // A learner serves no linearizable read (nor `endpoint health`) until it is promoted.
            try await cluster.join(newcomer, initialCluster: initialCluster ?? "", wait: false)
            let promoted = try await poll(timeout: .seconds(20), interval: .milliseconds(200)) {
                try await all.run("member", "promote", learnerID).succeeded
            }
            record.append("promoted once in sync: \(promoted)")
            try await cluster.waitUntilHealthy([newcomer])
            let put = try await cluster.etcdctl([newcomer]).run("put", "via-new", "yes")
            record.append("put via the new member: \(put.standardOutput.trimmed)")
            let update = try await all.run("member", "update", learnerID, "--peer-urls=\(newcomer.peerURL)")
            record.append("update: \(update.succeeded)")
            let bad = try await all.run("member", "update", learnerID, "--peer-urls=not-a-url")
            record.append("update with a bad URL: \(bad.succeeded)")
            let removeUnknown = try await all.run("member", "remove", "1234")
            record.append("remove unknown: \(Self.normalized(removeUnknown.standardError, cluster))")
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let target = cluster.members.first { $0 != leader && $0 != newcomer } ?? leader
            let statuses = try await cluster.statuses([target])
            let targetID = String(statuses.first?.memberID ?? 0, radix: 16)
            let notLeader = try await cluster.etcdctl([target]).run("move-leader", targetID)
            record.append("move-leader asked of a follower: \(notLeader.succeeded) \(notLeader.standardError.contains("no leader endpoint given"))")
            let moved = try await cluster.etcdctl([leader]).run("move-leader", targetID)
            record.append("move-leader: \(Self.normalized(moved.standardOutput, cluster))")
            let nowLeads = try await cluster.leader()
            record.append("the target leads: \(nowLeads == target)")
            let remove = try await all.run("member", "remove", learnerID)
            record.append("remove: \(Self.normalized(remove.standardOutput, cluster))")
            // The removed member stops by itself, as etcd's does.
            let newcomerProcess = cluster.process(of: newcomer)
            let exited = await poll(timeout: .seconds(10), interval: .milliseconds(100)) {
                newcomerProcess?.exitStatus != nil
            }
            record.append("removed member stopped: \(exited)")
            await cluster.stop(newcomer)
            cluster.forget(newcomer)
            let after = try await all.run("member", "list")
            record.append("member list after: \(Self.normalized(after.standardOutput, cluster))")
            return record
        }
        #expect(candidate == etcd)
    }

    @Test("leases granted, kept alive and looked up through followers; expiry after a leader change honours the TTL")
    func leasesOnFollowers() async throws {
        try await withEtcdCluster(.candidate) { cluster in
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let follower = try #require(cluster.members.first { $0 != leader })
            let viaFollower = cluster.etcdctl([follower])
            let grant = try await viaFollower.run("lease", "grant", "6")
            let lease = try #require(grant.standardOutput.split(separator: " ").dropFirst().first.map(String.init), "\(grant)")
            #expect(try await viaFollower.run("put", "leased", "v", "--lease=\(lease)").succeeded)
            let keepAlive = try await viaFollower.run("lease", "keep-alive", "--once", lease)
            #expect(keepAlive.standardOutput.contains("TTL(6)"), "\(keepAlive)")
            let ttl = try await viaFollower.run("lease", "timetolive", lease, "--keys")
            #expect(ttl.standardOutput.contains("granted with TTL(6s)") && ttl.standardOutput.contains("leased"), "\(ttl)")
            // The leader goes; the new one must not expire the lease before its TTL is over
            // (from the new leader's promotion), and must expire it after.
            await cluster.kill(leader)
            let others = cluster.members.filter { $0 != leader }
            _ = try #require(try await cluster.leader(among: others), "no new leader\n\(cluster.logTails())")
            let stillThere = try await cluster.etcdctl(others).run("get", "leased", "--print-value-only")
            #expect(stillThere.standardOutput.trimmed == "v")
            let expired = try await poll(timeout: .seconds(20), interval: .milliseconds(200)) {
                try await cluster.etcdctl(others).run("get", "leased", "--print-value-only").standardOutput.trimmed.isEmpty
            }
            #expect(expired, "\(cluster.logTails())")
        }
    }

    @Test("a watch on a follower sees every event in order across a leader change")
    func watchAcrossLeaderChange() async throws {
        try await withEtcdCluster(.candidate) { cluster in
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let follower = try #require(cluster.members.first { $0 != leader })
            let others = cluster.members.filter { $0 != leader }
            try await withEtcdGRPCClient(port: follower.clientPort) { client in
                try await withWatchStream(client) { stream in
                    var create = Etcdserverpb_WatchRequest()
                    create.createRequest.key = Data("w/".utf8)
                    create.createRequest.rangeEnd = Data("w0".utf8)
                    stream.send(create)
                    _ = await stream.receive(1)
                    for index in 0..<10 {
                        #expect(try await cluster.etcdctl().run("put", "w/\(index)", "\(index)").succeeded)
                    }
                    await cluster.kill(leader)
                    _ = try #require(try await cluster.leader(among: others), "no new leader\n\(cluster.logTails())")
                    for index in 10..<20 {
                        let put = try await cluster.etcdctl(others).run("put", "w/\(index)", "\(index)")
                        #expect(put.succeeded, "\(put)")
                    }
                    var events: [Mvccpb_Event] = []
                    let deadline = ContinuousClock.now.advanced(by: .seconds(15))
                    while events.count < 20 && ContinuousClock.now < deadline {
                        for received in await stream.receive(1, timeout: .seconds(1)) {
                            if case .response(let response) = received { events += response.events }
                        }
                    }
                    #expect(events.map { String(decoding: $0.kv.value, as: UTF8.self) } == (0..<20).map { "\($0)" })
                    let revisions = events.map(\.kv.modRevision)
                    #expect(revisions == revisions.sorted() && Set(revisions).count == revisions.count)
                }
            }
        }
    }
}

extension ClusterTests {
    @Test("a member that was down while the log was compacted catches up from the leader's snapshot (backend image), with the same keys and revisions")
    func catchUpBySnapshot() async throws {
        // Snapshots every 50 entries, keeping 10 behind: a member down for 300 writes is far
        // behind the leader's log and must get the backend image.
        try await withEtcdCluster(
            .candidate, extraArguments: ["--snapshot-count=50", "--experimental-snapshot-catchup-entries=10"]
        ) { cluster in
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let lagging = try #require(cluster.members.first { $0 != leader })
            let others = cluster.members.filter { $0 != lagging }
            #expect(try await cluster.etcdctl().run("put", "before", "1").succeeded)
            await cluster.kill(lagging)
            for index in 0..<300 {
                let put = try await cluster.etcdctl(others).run("put", "k\(index % 20)", "\(index)")
                #expect(put.succeeded, "\(put)")
                if !put.succeeded { break }
            }
            #expect(try await cluster.etcdctl(others).run("compact", "100").succeeded)
            try await cluster.restart(lagging, wait: false)
            let back = cluster.etcdctl([lagging])
            let expected = try await cluster.etcdctl(others).run("get", "", "--prefix", "-w", "json")
            let caughtUp = try await poll(timeout: .seconds(20), interval: .milliseconds(200)) {
                try await back.run("get", "k19", "--print-value-only", "--consistency=s").standardOutput
                    .trimmingCharacters(in: .whitespacesAndNewlines) == "299"
            }
            #expect(caughtUp, "\(cluster.logTails())")
            let log = String(decoding: (try? Data(contentsOf: cluster.logFile(of: lagging))) ?? Data(), as: UTF8.self)
            #expect(log.contains("installed backend snapshot"), "the member caught up without a snapshot")
            // Everything the others hold, at the same revisions.
            let local = try await back.run("get", "", "--prefix", "-w", "json", "--consistency=s")
            let kvs = { (text: String) -> String in
                let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                return String(describing: (object?["kvs"] as? [[String: Any]])?.map { "\($0["key"] ?? "")=\($0["mod_revision"] ?? "")" } ?? [])
            }
            #expect(kvs(local.standardOutput) == kvs(expected.standardOutput))
            // It hashes the history it got from the snapshot as the others hash theirs.
            let hashes = try await Self.hashKVs(cluster.etcdctl(), revision: 302)
            #expect(hashes.count == 3 && Set(hashes).count == 1, "\(hashes)")
            // It serves and takes writes like any member, and history before the compaction is gone.
            #expect(try await back.run("put", "after", "2").succeeded)
            let old = try await back.run("get", "k0", "--rev=50")
            #expect(old.standardError.contains("required revision has been compacted"), "\(old)")
        }
    }
}

extension ClusterTests {
    @Test("a member added after the log was compacted catches up from the leader's snapshot (backend image), with the same keys and revisions")
    func joinAfterCompaction() async throws {
        // Snapshots every 50 entries, keeping 10 behind: the log no longer starts at index 1 by
        // the time the fourth member joins, so it can only start from the leader's snapshot.
        try await withEtcdCluster(
            .candidate, extraArguments: ["--snapshot-count=50", "--experimental-snapshot-catchup-entries=10"]
        ) { cluster in
            let all = cluster.etcdctl()
            for index in 0..<200 {
                let put = try await all.run("put", "k\(index % 20)", "\(index)")
                #expect(put.succeeded, "\(put)")
                if !put.succeeded { break }
            }
            #expect(try await all.run("compact", "100").succeeded)
            let newcomer = try cluster.newMember(named: "infra4")
            // A fresh cluster refuses member changes for its first 5 s ("unhealthy cluster").
            var add = try await all.run("member", "add", "infra4", "--peer-urls=\(newcomer.peerURL)")
            _ = try await poll(timeout: .seconds(15), interval: .milliseconds(500)) {
                if !add.succeeded { add = try await all.run("member", "add", "infra4", "--peer-urls=\(newcomer.peerURL)") }
                return add.succeeded
            }
            try #require(add.succeeded, "\(add)")
            let initialCluster = try #require(
                add.standardOutput.split(separator: "\n").first { $0.hasPrefix("ETCD_INITIAL_CLUSTER=") }
                    .map { String($0.dropFirst("ETCD_INITIAL_CLUSTER=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) },
                "\(add)")
            try await cluster.join(newcomer, initialCluster: initialCluster, wait: false)
            let joined = cluster.etcdctl([newcomer])
            let caughtUp = try await poll(timeout: .seconds(20), interval: .milliseconds(200)) {
                try await joined.run("get", "k19", "--print-value-only", "--consistency=s").standardOutput.trimmed == "199"
            }
            #expect(caughtUp, "\(cluster.logTails())")
            let log = String(decoding: (try? Data(contentsOf: cluster.logFile(of: newcomer))) ?? Data(), as: UTF8.self)
            #expect(log.contains("installed backend snapshot"), "the member caught up without a snapshot")
            // Everything the others hold, at the same revisions, read locally on the newcomer.
            let others = cluster.members.filter { $0 != newcomer }
            let expected = try await cluster.etcdctl(others).run("get", "", "--prefix", "-w", "json")
            let local = try await joined.run("get", "", "--prefix", "-w", "json", "--consistency=s")
            let kvs = { (text: String) -> [String] in
                let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                return (object?["kvs"] as? [[String: Any]])?.map {
                    "\($0["key"] ?? "")=\($0["value"] ?? "")@\($0["mod_revision"] ?? "")"
                } ?? []
            }
            #expect(kvs(local.standardOutput).count == 20)
            #expect(kvs(local.standardOutput) == kvs(expected.standardOutput))
            // A voter like the others: healthy (a linearizable read through it) and taking writes.
            try await cluster.waitUntilHealthy([newcomer])
            #expect(try await joined.run("put", "after", "2").succeeded)
            let old = try await joined.run("get", "k0", "--rev=50")
            #expect(old.standardError.contains("required revision has been compacted"), "\(old)")
        }
    }
}

extension ClusterTests {
    /// clientv3's `WithRequireLeader` metadata.
    private static let requireLeader: Metadata = ["hasleader": "true"]

    /// How a call ended: its values, or its error's code and message.
    private static func outcome(_ call: () async throws -> Etcdserverpb_RangeResponse) async -> String {
        do {
            return "values \(try await call().kvs.map { String(decoding: $0.value, as: UTF8.self) })"
        } catch let error as RPCError {
            return "\(error.code): \(error.message)"
        } catch {
            return "\(error)"
        }
    }

    private static func describe(_ received: [WatchStream.Received]) -> String {
        received.map { item in
            switch item {
            case .response(let response): "response created=\(response.created) canceled=\(response.canceled)"
            case .ended(let status): "ended \(status)"
            }
        }.joined(separator: ", ")
    }

    @Test("a member that lost its leader: with hasleader a Range fails at once with no leader and a watch ends after three election timeouts; without it a linearizable read times out, as etcd")
    func requireLeaderWithoutLeader() async throws {
        let (etcd, candidate) = try await sideBySide { cluster in
            var record: [String] = []
            _ = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let survivor = cluster.members[0]
            #expect(try await cluster.etcdctl([survivor]).run("put", "k", "v").succeeded)
            var linearizable = Etcdserverpb_RangeRequest()
            linearizable.key = Data("k".utf8)
            var serializable = linearizable
            serializable.serializable = true
            var shortDeadline = CallOptions.defaults
            shortDeadline.timeout = .seconds(3)
            try await withEtcdGRPCClient(port: survivor.clientPort) { client in
                let led = await Self.outcome { try await client.kv.range(linearizable, metadata: Self.requireLeader) }
                record.append("hasleader Range with a leader: \(led)")
                try await withWatchStream(client, metadata: Self.requireLeader) { stream in
                    stream.send(.create("k"))
                    record.append("hasleader watch with a leader: \(Self.describe(await stream.receive(1)))")
                    let clock = ContinuousClock()
                    let lost = clock.now
                    for member in cluster.members where member != survivor { await cluster.kill(member) }
                    // Once the survivor gives up on its leader (an election timeout, or a leader's
                    // check-quorum), a call asking for one fails at once. A serializable read tells
                    // when: it needs no leader, so only the metadata can refuse it. (A linearizable
                    // read in flight as the leader goes fails otherwise: "leader changed" as etcd
                    // 3.5 says, where 3.4 waits for "request timed out".)
                    var refusal = "no refusal within 10 s"
                    _ = await poll(timeout: .seconds(10), interval: .milliseconds(100)) {
                        let outcome = await Self.outcome { try await client.kv.range(serializable, metadata: Self.requireLeader) }
                        guard !outcome.hasPrefix("values") else { return false }
                        refusal = outcome
                        return true
                    }
                    record.append("hasleader serializable Range without a leader: \(refusal)")
                    let asked = clock.now
                    let refused = await Self.outcome { try await client.kv.range(linearizable, metadata: Self.requireLeader) }
                    record.append("hasleader linearizable Range without a leader: \(refused)")
                    record.append("refused within 1 s: \(asked.duration(to: clock.now) < .seconds(1))")
                    // The stream ends three election timeouts (1 s each) after the leader is gone.
                    let ended = await stream.receive(1, timeout: .seconds(15))
                    record.append("hasleader watch without a leader: \(Self.describe(ended))")
                    let elapsed = lost.duration(to: clock.now)
                    record.append("watch ended within 12 s of losing the leader: \(stream.hasEnded && elapsed < .seconds(12))")
                }
                try await withWatchStream(client, metadata: Self.requireLeader) { stream in
                    stream.send(.create("k"))
                    record.append("hasleader watch opened without a leader: \(Self.describe(await stream.receive(1, timeout: .seconds(5))))")
                }
                try await withWatchStream(client) { stream in
                    stream.send(.create("k"))
                    record.append("plain watch opened without a leader: \(Self.describe(await stream.receive(1, timeout: .seconds(5))))")
                }
                let plain = await Self.outcome { try await client.kv.range(linearizable, options: shortDeadline) }
                record.append("linearizable Range without hasleader, 3 s deadline: \(plain)")
                let local = await Self.outcome { try await client.kv.range(serializable, options: shortDeadline) }
                record.append("serializable Range without hasleader: \(local)")
            }
            return record
        }
        #expect(candidate == etcd)
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}

extension ClusterTests {
    @Test("a member removed while it was down stops once it is back and a peer tells it so, as etcd's does")
    func removedWhileDown() async throws {
        try await withEtcdCluster(.candidate) { cluster in
            let leader = try #require(try await cluster.leader(), "no leader\n\(cluster.logTails())")
            let removed = try #require(cluster.members.first { $0 != leader })
            let status = try await cluster.etcdctl([removed]).run("endpoint", "status", "-w", "json")
            let id = try #require(
                (try JSONValue(parsing: status.standardOutput))[0]?["Status"]?["header"]?["member_id"]?.unsignedValue)
            await cluster.kill(removed)
            let others = cluster.members.filter { $0 != removed }
            let remove = try await cluster.etcdctl(others).run("member", "remove", String(id, radix: 16))
            try #require(remove.succeeded, "\(remove)")
            // Back with a log that never saw its removal committed: no leader talks to it any more.
            try await cluster.restart(removed, wait: false)
            let exited = await poll(timeout: .seconds(20), interval: .milliseconds(100)) {
                cluster.process(of: removed)?.exitStatus != nil
            }
            #expect(exited, "\(cluster.logTails())")
            let log = String(decoding: (try? Data(contentsOf: cluster.logFile(of: removed))) ?? Data(), as: UTF8.self)
            #expect(log.contains("the member has been permanently removed from the cluster (a peer says so)"), "\(log.suffix(2_000))")
            #expect(try await cluster.etcdctl(others).run("put", "after", "1").succeeded)
        }
    }
}
