import EtcdAPI
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Logging

/// etcd's data corruption checks, by comparing HashKV between members:
/// - at start (`--experimental-initial-corrupt-check`), before serving clients: this member's
///   hash against every peer's at this member's revision; a peer with the same compacted
///   revision and another hash means this member's data (or the peer's) is damaged, and the
///   member refuses to start ("found data inconsistency with peers");
/// - periodically on the leader (`--experimental-corrupt-check-time`): the peers' hashes at the
///   leader's revision; a peer whose hash differs, or that is ahead of the leader, gets the
///   CORRUPT alarm raised through Raft, which stops every write in the cluster until disarmed.
///
/// Peers are asked on their peer URLs (``PeerHashKVQuery``), as etcd asks on its peers'
/// `/members/hashkv`: their client port's HashKV needs an admin once auth is on. The answer is
/// the one `etcdctl endpoint hashkv` shows.
struct CorruptionChecker: Sendable {
    let replica: ReplicaHandle
    let status: MemberStatusBoard
    let proposer: RequestProposer
    let localMember: MemberID
    let logger: Logger
    /// The cluster the peers must belong to.
    let cluster: ClusterID
    /// How peers' `https://` peer URLs are dialed.
    var security: ServerSecurity = .none
    /// How long one peer has to answer.
    var peerTimeout: Duration = .seconds(5)

    /// A peer's answer to HashKV at a revision, or why there is none.
    struct PeerHash: Sendable {
        var member: MemberID
        var response: Etcdserverpb_HashKVResponse?
        var error: String?
    }

    struct InconsistencyFound: Error, CustomStringConvertible {
        let member: MemberID
        var description: String { "\(member) found data inconsistency with peers" }
    }

    /// The check at start: throws ``InconsistencyFound`` if a peer that compacted as far as this
    /// member has another hash at this member's revision.
    func checkAtStart() async throws {
        logger.info("starting initial corruption check", metadata: ["local-member-id": "\(localMember)"])
        let local = try await replica.hashKV(revision: 0)
        var mismatches = 0
        for peer in await peerHashes(at: local.revision) {
            guard let response = peer.response else {
                logger.warning(
                    "cannot check the hash of a peer",
                    metadata: ["peer-id": "\(peer.member)", "error": "\(peer.error ?? "no answer")"])
                continue
            }
            guard response.hash != local.hash else { continue }
            if response.compactRevision == local.compactRevision {
                logger.error(
                    "found data inconsistency with a peer",
                    metadata: [
                        "local-member-hash": "\(local.hash)", "peer-id": "\(peer.member)", "peer-hash": "\(response.hash)",
                        "revision": "\(local.revision)", "compact-revision": "\(local.compactRevision)",
                    ])
                mismatches += 1
            } else {
                logger.warning(
                    "cannot check the hash of a peer: it compacted to another revision",
                    metadata: ["peer-id": "\(peer.member)", "peer-compact-revision": "\(response.compactRevision)"])
            }
        }
        guard mismatches == 0 else { throw InconsistencyFound(member: localMember) }
        logger.info("initial corruption check passed: no corruption", metadata: ["local-member-id": "\(localMember)"])
    }

    /// The periodic check, run every `interval` while this member leads.
    func runPeriodically(every interval: Duration, until shutdown: ShutdownSignal) async {
        logger.info("enabled corruption checking", metadata: ["interval": "\(interval)"])
        while await shutdown.sleep(interval) {
            guard status.leader == localMember.rawValue else { continue }
            do {
                try await checkAsLeader()
            } catch {
                logger.warning("corruption check failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// etcd's `checkHashKV`: raises CORRUPT (once per check) for the first member found damaged.
    func checkAsLeader() async throws {
        let before = try await replica.hashKV(revision: 0)
        let peers = await peerHashes(at: before.revision)
        let after = try await replica.hashKV(revision: 0)
        var suspect: (MemberID, String)?
        if after.hash != before.hash, after.revision == before.revision, after.compactRevision == before.compactRevision {
            suspect = (localMember, "its own hash changed at revision \(before.revision) (\(before.hash) then \(after.hash))")
        }
        for peer in peers where suspect == nil {
            guard let response = peer.response else { continue }
            if response.header.revision > after.revision {
                suspect = (peer.member, "revision \(response.header.revision) is ahead of the leader's \(after.revision)")
            } else if response.compactRevision > after.compactRevision {
                suspect = (peer.member, "compact revision \(response.compactRevision) is ahead of the leader's \(after.compactRevision)")
            } else if response.compactRevision == before.compactRevision, response.hash != before.hash {
                suspect = (peer.member, "hash \(response.hash) at revision \(before.revision) differs from the leader's \(before.hash)")
            }
        }
        guard let (member, reason) = suspect else { return }
        logger.error("data corruption detected", metadata: ["member-id": "\(member)", "reason": "\(reason)"])
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.alarm.memberID = member.rawValue
        entry.alarm.action = .activate
        entry.alarm.alarm = .corrupt
        _ = try await proposer.propose(entry)
    }

    /// HashKV at `revision` from every other member with a client URL, asked concurrently.
    func peerHashes(at revision: Int64) async -> [PeerHash] {
        let members = ((try? replica.read { $0.membership.sortedMembers }) ?? []).filter { $0.id != localMember }
        return await withTaskGroup(of: PeerHash.self) { group in
            for member in members {
                group.addTask { await ask(member, revision: revision) }
            }
            var answers: [PeerHash] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.member.rawValue < $1.member.rawValue }
        }
    }

    private func ask(_ member: ClusterMember, revision: Int64) async -> PeerHash {
        var failures: [String] = []
        for url in member.peerURLs {
            guard let endpoint = try? EndpointURL(parsing: url) else {
                failures.append("\(url): not a URL")
                continue
            }
            do {
                let response = try await PeerHashKVQuery.fetch(
                    host: endpoint.host, port: endpoint.port, clusterID: cluster.rawValue, revision: revision,
                    tls: try PeerClusterQuery.tls(for: endpoint, security.peer), timeout: peerTimeout)
                return PeerHash(member: member.id, response: response)
            } catch {
                failures.append("\(url): \(error)")
            }
        }
        return PeerHash(member: member.id, error: failures.isEmpty ? "no peer URL" : failures.joined(separator: "; "))
    }
}
