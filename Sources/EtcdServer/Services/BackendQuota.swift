import EtcdAPI
import EtcdCommon
import EtcdReplica
import Logging

/// etcd's backend space quota (`--quota-backend-bytes`): a put, a txn with puts or a lease grant
/// that would take the backend to its quota is refused with "database space exceeded" before it
/// is proposed, and the NOSPACE alarm is raised through Raft, after which every member refuses
/// such writes at apply until the alarm is disarmed. Reads, deletes and compactions go on, so an
/// operator can free space (compact, defragment) and then disarm.
struct BackendQuota: Sendable {
    /// etcd's default quota, used when the flag is 0.
    static let defaultBytes: Int64 = 2 * 1024 * 1024 * 1024
    /// Above this etcd warns that the quota exceeds what it recommends.
    static let recommendedMaximumBytes: Int64 = 8 * 1024 * 1024 * 1024

    /// The quota in bytes; nil when the flag is negative (no quota, as etcd).
    let limitBytes: Int64?
    let status: MemberStatusBoard
    let proposer: RequestProposer
    let memberID: MemberID
    /// Where the raised alarms are read: a write refused while this member's alarm is already
    /// up proposes nothing more (a flood of refused writes would otherwise fill the log).
    let replica: ReplicaHandle

    /// The quota a `--quota-backend-bytes` value sets.
    static func limit(forFlag value: Int64) -> Int64? {
        if value < 0 { return nil }
        return value == 0 ? defaultBytes : value
    }

    /// Says at start which quota is in force, as etcd does.
    static func logSetting(flag value: Int64, logger: Logger) {
        switch limit(forFlag: value) {
        case nil:
            logger.info("disabled backend quota", metadata: ["quota-size-bytes": "\(value)"])
        case let bytes? where value == 0:
            logger.info("enabled backend quota with default value", metadata: ["quota-size-bytes": "\(bytes)"])
        case let bytes? where bytes > recommendedMaximumBytes:
            logger.warning(
                "quota exceeds the maximum value",
                metadata: ["quota-size-bytes": "\(bytes)", "quota-maximum-size-bytes": "\(recommendedMaximumBytes)"])
        case let bytes?:
            logger.info("enabled backend quota", metadata: ["quota-size-bytes": "\(bytes)"])
        }
    }

    /// Throws `noSpace` (and raises the alarm) when a write of `cost` bytes does not fit; a
    /// write that costs nothing (a txn without puts) always passes, as in etcd.
    func check(cost: Int) async throws {
        guard let limitBytes, cost > 0 else { return }
        if status.databaseSize + Int64(cost) < limitBytes { return }
        let member = memberID.rawValue
        let alreadyRaised = (try? replica.read { replica in
            replica.alarms.contains { $0.memberID == member && $0.alarm == .nospace }
        }) ?? false
        if alreadyRaised { throw EtcdError.noSpace }
        var request = Etcdserverpb_AlarmRequest()
        request.memberID = member
        request.action = .activate
        request.alarm = .nospace
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.alarm = request
        // As etcd, the write is refused whether or not raising the alarm succeeded (without a
        // leader it cannot); the next write over the quota tries again.
        _ = try? await proposer.propose(entry)
        throw EtcdError.noSpace
    }
}
