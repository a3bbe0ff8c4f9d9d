import EtcdCommon
import EtcdRaft
import EtcdReplica
import Foundation
import NIOCore
import NIOPosix

/// What a member joining an existing cluster learns from a member of it (etcd's `GET /members`
/// on a peer URL, with the cluster ID from its `X-Etcd-Cluster-ID` header): the cluster's ID and
/// its members, among them the joiner itself as `member add` recorded it.
struct PeerClusterInfo: Codable, Sendable, Hashable {
    var clusterID: UInt64
    var members: [ClusterMember]
    /// The members removed from the cluster (absent in answers of older builds): how a member
    /// cut off by its own removal learns of it (etcd's peers answer it 410 Gone).
    var removed: [UInt64]?
}

/// The query for ``PeerClusterInfo`` on a peer port: a handshake that names no sender, no
/// recipient and no cluster (which no member sends), answered with the length-prefixed JSON of
/// the cluster info, after which the member closes the connection.
enum PeerClusterQuery {
    static let handshake = PeerHandshake(from: .none, to: .none, clusterID: 0)
    /// The largest answer a joiner accepts (a membership is a few hundred bytes per member).
    static let maxAnswerBytes = 1 << 20

    /// The TLS to ask `url` with: `tls` for an `https://` URL (which needs it), none for `http://`.
    static func tls(for url: EndpointURL, _ tls: TLSContexts?) throws -> TLSContexts? {
        guard url.scheme == "https" else { return nil }
        guard let tls else { throw PeerTLSMissing(host: url.host, port: url.port) }
        return tls
    }

    /// The answer's bytes: length (u32, little-endian), then JSON.
    static func encodeAnswer(_ info: PeerClusterInfo) -> [UInt8] {
        let json = (try? Array(JSONEncoder().encode(info))) ?? []
        return PeerQueryExchange.lengthPrefix(json.count) + json
    }

    enum QueryError: Error, CustomStringConvertible {
        case unreachable(String)
        case badAnswer(String)

        var description: String {
            switch self {
            case .unreachable(let reason): "cannot reach the member: \(reason)"
            case .badAnswer(let reason): "the member's answer is not cluster information: \(reason)"
            }
        }
    }

    /// Asks the member listening for peers on `host`:`port` for the cluster's information, over
    /// TLS with `tls` (an `https://` peer URL).
    static func fetch(
        host: String, port: Int, tls: TLSContexts? = nil, timeout: Duration = .seconds(2),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> PeerClusterInfo {
        let answer = try await PeerQueryExchange.run(
            host: host, port: port, tls: tls, group: group, request: handshake.encoded, maxAnswerBytes: maxAnswerBytes,
            timeout: timeout)
        do {
            return try JSONDecoder().decode(PeerClusterInfo.self, from: Data(answer))
        } catch {
            throw QueryError.badAnswer("\(error)")
        }
    }
}
