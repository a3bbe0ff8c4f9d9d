import EtcdBackend
import EtcdCommon
import EtcdRaft
import EtcdReplica

/// Why a backend image could not be described.
struct SnapshotImageDescriptionError: Error, Hashable, Sendable, CustomStringConvertible {
    let reason: String
    var description: String { "cannot describe the snapshot image: \(reason)" }
}

/// What a backend image holds, as Raft snapshot metadata: its applied (consistent) index and term,
/// and the membership applied by then as a configuration.
///
/// etcd's leader sends a follower its backend as of the moment of sending with metadata built
/// then (`createMergedSnapshotMessage`: applied index and term, current configuration), not as
/// Raft's latest stored snapshot describes it. A member added since that snapshot is in the
/// image's membership, so it accepts the image (a snapshot must list its receiver), and it
/// restores Raft at the image's index rather than at an older one.
enum SnapshotImageDescription {
    /// Reads the metadata of the image at `imagePath`; nil when the image records no applied
    /// index or no member (then Raft's own description is sent).
    static func read(imagePath: String) throws(SnapshotImageDescriptionError) -> SnapshotMetadata? {
        do {
            // The connection closes when `backend` goes at the end of this scope, before the
            // image is read for sending.
            let backend = try Backend(path: imagePath)
            let meta = { (name: String) throws(BackendError) -> UInt64? in
                try backend.withStatement("SELECT value FROM meta WHERE name = ?1") { statement throws(BackendError) in
                    try statement.bind(name, at: 1)
                    return try statement.step() ? UInt64(clamping: statement.int64(at: 0)) : nil
                }
            }
            guard let index = try meta("consistent_index"), let term = try meta("term"), index > 0, term > 0 else {
                return nil
            }
            let members = try MembershipTable(backend: backend).load().sortedMembers
            guard !members.isEmpty else { return nil }
            return SnapshotMetadata(
                index: index, term: term,
                confState: ConfState(
                    voters: members.filter { !$0.isLearner }.map { NodeID($0.id.rawValue) },
                    learners: members.filter(\.isLearner).map { NodeID($0.id.rawValue) }))
        } catch {
            throw SnapshotImageDescriptionError(reason: "\(error)")
        }
    }
}
