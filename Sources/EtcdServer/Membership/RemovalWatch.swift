import EtcdCommon
import EtcdReplica
import Logging

/// How a member learns that it was removed when Raft cannot tell it: once the removal is
/// committed, the leader stops replicating to the removed member, which may not have learned
/// that its removal was committed, and so waits without a leader forever. etcd's peers answer
/// such a member "410 Gone", and it stops. Here a member without a leader for two election
/// timeouts asks its peers for the cluster (the joining query, which lists removed members) and
/// stops if one of them lists it as removed.
struct RemovalWatch: Sendable {
    let localMember: MemberID
    let cluster: ClusterID
    let status: MemberStatusBoard
    let replica: ReplicaHandle
    /// One election timeout: how often it looks, and half the leaderless time before it asks.
    let interval: Duration
    /// Peer TLS, for peers with `https://` URLs.
    var tls: TLSContexts? = nil

    /// Returns true once a peer of the same cluster lists this member as removed; false when the
    /// server stops first.
    func run(until shutdown: ShutdownSignal) async -> Bool {
        var leaderlessSince: ContinuousClock.Instant?
        while await shutdown.sleep(interval) {
            guard status.leader == 0 else {
                leaderlessSince = nil
                continue
            }
            let since = leaderlessSince ?? .now
            leaderlessSince = since
            guard since.duration(to: .now) >= interval * 2 else { continue }
            if await peerListsThisMemberRemoved() { return true }
        }
        return false
    }

    private func peerListsThisMemberRemoved() async -> Bool {
        let peers = ((try? replica.read { $0.membership.sortedMembers }) ?? []).filter { $0.id != localMember }
        for peer in peers {
            for text in peer.peerURLs {
                guard let url = try? EndpointURL(parsing: text),
                    let info = try? await PeerClusterQuery.fetch(
                        host: url.host, port: url.port, tls: try PeerClusterQuery.tls(for: url, tls), timeout: interval)
                else { continue }
                if info.clusterID == cluster.rawValue, info.removed?.contains(localMember.rawValue) == true { return true }
            }
        }
        return false
    }
}
