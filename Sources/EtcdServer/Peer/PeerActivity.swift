import EtcdCommon
import EtcdRaft
import Synchronization

/// When each peer was last heard from, for etcd's membership-change safety checks: a change may
/// not leave the cluster without an active quorum (etcd asks its transport `ActiveSince`).
final class PeerActivity: Sendable {
    /// etcd's `HealthInterval`: a peer heard from within it counts as connected.
    static let healthInterval: Duration = .seconds(5)

    private let lastHeard = Mutex<[NodeID: ContinuousClock.Instant]>([:])

    func heard(from peer: NodeID, at instant: ContinuousClock.Instant = .now) {
        lastHeard.withLock { $0[peer] = instant }
    }

    /// Peers heard from within `interval` before `now`.
    func connected(within interval: Duration = healthInterval, now: ContinuousClock.Instant = .now) -> Set<MemberID> {
        lastHeard.withLock { heard in
            Set(heard.filter { $0.value.duration(to: now) <= interval }.keys.map { MemberID($0.rawValue) })
        }
    }

    /// Whether `peer` was ever heard from since this member started.
    func everHeard(from peer: MemberID) -> Bool {
        lastHeard.withLock { $0[NodeID(peer.rawValue)] != nil }
    }
}
