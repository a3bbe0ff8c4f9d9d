import Crypto
import EtcdCommon
import EtcdReplica

/// How etcd names members and clusters, so that a member started with the same flags as an etcd
/// member gets the same IDs (a default single member is 8e9e05c52164694d in cluster
/// cdf818194e3a8c32, on both).
enum MemberIdentity {
    /// SHA-1 over the member's sorted peer URLs and the cluster token; the first 8 bytes, big-endian.
    static func memberID(peerURLs: [String], clusterToken: String) -> MemberID {
        var bytes: [UInt8] = []
        for url in peerURLs.sorted() { bytes += Array(url.utf8) }
        bytes += Array(clusterToken.utf8)
        return MemberID(firstWord(of: bytes))
    }

    /// SHA-1 over every member ID in ascending order, 8 bytes big-endian each.
    static func clusterID(members: [MemberID]) -> ClusterID {
        var bytes: [UInt8] = []
        for member in members.sorted() {
            withUnsafeBytes(of: member.rawValue.bigEndian) { bytes += $0 }
        }
        return ClusterID(firstWord(of: bytes))
    }

    private static func firstWord(of bytes: [UInt8]) -> UInt64 {
        let digest = Array(Insecure.SHA1.hash(data: bytes))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Parses `--initial-cluster` (`name=url,name=url`) into each member's peer URLs, in order of
    /// first appearance.
    static func parseInitialCluster(_ text: String) throws(ConfigurationError) -> [(name: String, peerURLs: [String])] {
        var members: [(name: String, peerURLs: [String])] = []
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw .invalidValue(flag: "initial-cluster", value: text, reason: "expected name=URL entries")
            }
            let url = try EndpointURL(parsing: String(parts[1])).description
            if let index = members.firstIndex(where: { $0.name == parts[0] }) {
                members[index].peerURLs.append(url)
            } else {
                members.append((String(parts[0]), [url]))
            }
        }
        return members
    }
}

extension MemberIdentity {
    struct Resolved: Sendable {
        var member: MemberID
        var cluster: ClusterID
        /// The members `--initial-cluster` names, with the IDs etcd gives them (a new cluster's
        /// first membership).
        var initialMembers: [ClusterMember] = []
    }

    /// The IDs this member has in the cluster the flags describe, as etcd derives them: each
    /// member's from its peer URLs and the cluster token, the cluster's from all of them.
    static func resolve(_ configuration: ServerConfiguration) throws(ConfigurationError) -> Resolved {
        let members = try parseInitialCluster(configuration.effectiveInitialCluster)
        guard let local = members.first(where: { $0.name == configuration.name }) else {
            throw .invalidValue(
                flag: "initial-cluster",
                value: configuration.effectiveInitialCluster,
                reason: "couldn't find local name \"\(configuration.name)\" in the initial cluster configuration"
            )
        }
        // etcd checks that the member's advertised peer URLs are the ones the cluster lists for it.
        let advertised = configuration.initialAdvertisePeerURLs.map(\.description).sorted()
        guard advertised == local.peerURLs.sorted() else {
            throw .invalidValue(
                flag: "initial-cluster",
                value: configuration.effectiveInitialCluster,
                reason: "--initial-cluster has \(configuration.name)=\(local.peerURLs.joined(separator: ",")) but missing from "
                    + "--initial-advertise-peer-urls=\(advertised.joined(separator: ","))"
            )
        }
        var initial: [ClusterMember] = []
        var seenURLs: Set<String> = []
        for entry in members {
            for url in entry.peerURLs where !seenURLs.insert(url).inserted {
                throw .invalidValue(
                    flag: "initial-cluster", value: configuration.effectiveInitialCluster,
                    reason: "duplicate peer URL \(url) in the initial cluster")
            }
            let id = memberID(peerURLs: entry.peerURLs, clusterToken: configuration.initialClusterToken)
            initial.append(ClusterMember(id: id, name: entry.name, peerURLs: entry.peerURLs))
        }
        let member = memberID(peerURLs: local.peerURLs, clusterToken: configuration.initialClusterToken)
        return Resolved(member: member, cluster: clusterID(members: initial.map(\.id)), initialMembers: initial)
    }
}

extension MemberIdentity {
    /// The IDs of a member joining an existing cluster (`--initial-cluster-state existing`), from
    /// what a member of it answered: etcd's `ValidateClusterAndAssignIDs`, which wants
    /// `--initial-cluster` to list exactly the cluster's members (this one included, as
    /// `member add` printed it) and takes each one's ID from the member with the same peer URLs.
    static func resolveJoining(
        _ configuration: ServerConfiguration, cluster: PeerClusterInfo
    ) throws(ConfigurationError) -> Resolved {
        let listed = try parseInitialCluster(configuration.effectiveInitialCluster)
        guard listed.count == cluster.members.count else {
            throw .invalid(
                "error validating peerURLs \(configuration.effectiveInitialCluster): member count is unequal "
                    + "(the cluster has \(cluster.members.count) members, --initial-cluster lists \(listed.count))")
        }
        var local: MemberID?
        for entry in listed {
            let urls = entry.peerURLs.sorted()
            guard let match = cluster.members.first(where: { $0.peerURLs.sorted() == urls }) else {
                throw .invalid(
                    "error validating peerURLs \(configuration.effectiveInitialCluster): unmatched member while checking "
                        + "PeerURLs (\(entry.name)=\(urls.joined(separator: ",")) is not a member of the cluster)")
            }
            if entry.name == configuration.name { local = match.id }
        }
        guard let local else {
            throw .invalidValue(
                flag: "initial-cluster", value: configuration.effectiveInitialCluster,
                reason: "couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        return Resolved(member: local, cluster: ClusterID(cluster.clusterID), initialMembers: [])
    }

    /// Asks each other member that `--initial-cluster` names, in turn, for the cluster's
    /// information; etcd's error when none answers.
    static func fetchCluster(_ configuration: ServerConfiguration, tls: TLSContexts? = nil) async throws -> PeerClusterInfo {
        let listed = try parseInitialCluster(configuration.effectiveInitialCluster)
        var failures: [String] = []
        for entry in listed where entry.name != configuration.name {
            for text in entry.peerURLs {
                guard let url = try? EndpointURL(parsing: text) else { continue }
                do {
                    return try await PeerClusterQuery.fetch(
                        host: url.host, port: url.port, tls: try PeerClusterQuery.tls(for: url, tls))
                } catch {
                    failures.append("\(text): \(error)")
                }
            }
        }
        throw ConfigurationError.invalid(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs ("
                + failures.joined(separator: "; ") + ")")
    }
}
