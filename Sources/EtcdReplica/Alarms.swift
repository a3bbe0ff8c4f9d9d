public import EtcdAPI
public import EtcdBackend
import EtcdCommon
import EtcdMVCC
import Logging

/// The alarms raised in the cluster (etcd's alarm store): which member raised which alarm.
/// Alarms are replicated state, changed only by applied Alarm entries, and kept in the backend
/// (etcd's "alarm" bucket) so that they survive restarts and travel in snapshots.
public struct AlarmTable {
    public let backend: Backend

    public init(backend: Backend) throws(BackendError) {
        self.backend = backend
        try backend.execute(
            """
            CREATE TABLE IF NOT EXISTS alarms (
                member_id INTEGER NOT NULL, alarm INTEGER NOT NULL, PRIMARY KEY (member_id, alarm));
            """
        )
    }

    /// Every stored alarm, ordered by type then member.
    public func all() throws(BackendError) -> [Etcdserverpb_AlarmMember] {
        try backend.withStatement("SELECT member_id, alarm FROM alarms ORDER BY alarm, member_id") {
            statement throws(BackendError) -> [Etcdserverpb_AlarmMember] in
            var alarms: [Etcdserverpb_AlarmMember] = []
            while try statement.step() {
                var alarm = Etcdserverpb_AlarmMember()
                alarm.memberID = UInt64(bitPattern: statement.int64(at: 0))
                alarm.alarm = Etcdserverpb_AlarmType(rawValue: Int(truncatingIfNeeded: statement.int64(at: 1))) ?? .none
                alarms.append(alarm)
            }
            return alarms
        }
    }

    func clear() throws(BackendError) {
        try backend.execute("DELETE FROM alarms")
    }

    func insert(_ alarm: Etcdserverpb_AlarmMember) throws(BackendError) {
        try backend.withStatement("INSERT OR IGNORE INTO alarms (member_id, alarm) VALUES (?1, ?2)") {
            statement throws(BackendError) in
            try statement.bind(Int64(bitPattern: alarm.memberID), at: 1)
            try statement.bind(Int64(alarm.alarm.rawValue), at: 2)
            try statement.run()
        }
    }

    func delete(_ alarm: Etcdserverpb_AlarmMember) throws(BackendError) {
        try backend.withStatement("DELETE FROM alarms WHERE member_id = ?1 AND alarm = ?2") {
            statement throws(BackendError) in
            try statement.bind(Int64(bitPattern: alarm.memberID), at: 1)
            try statement.bind(Int64(alarm.alarm.rawValue), at: 2)
            try statement.run()
        }
    }
}

/// What a write is charged against the backend quota (etcd's quota cost): a put costs its key,
/// its value and 256 bytes of metadata; a txn the larger of its two branches' top-level puts;
/// a lease grant 64 bytes. Anything else costs nothing and is never refused for space.
public enum QuotaCost {
    static let keyValueOverhead = 256
    public static let leaseGrant = 64

    public static func of(_ put: Etcdserverpb_PutRequest) -> Int {
        keyValueOverhead + put.key.count + put.value.count
    }

    public static func of(_ txn: Etcdserverpb_TxnRequest) -> Int {
        func puts(_ operations: [Etcdserverpb_RequestOp]) -> Int {
            operations.reduce(0) { total, operation in
                if case .requestPut(let put) = operation.request { return total + of(put) }
                return total
            }
        }
        return max(puts(txn.success), puts(txn.failure))
    }
}

extension Replica {
    /// Whether an alarm of `type` is raised by any member.
    public func isRaised(_ type: Etcdserverpb_AlarmType) -> Bool {
        alarms.contains { $0.alarm == type }
    }

    /// etcd's `applierV3backend.Alarm`: GET lists the alarms of a type (every alarm for NONE);
    /// ACTIVATE raises one (NONE is ignored) and answers with it, also when it was already
    /// raised; DEACTIVATE clears one and answers with it, or with nothing if it was not raised.
    func applyAlarm(_ request: Etcdserverpb_AlarmRequest) throws(ReplicaError) -> Etcdserverpb_AlarmResponse {
        var response = Etcdserverpb_AlarmResponse()
        var alarm = Etcdserverpb_AlarmMember()
        alarm.memberID = request.memberID
        alarm.alarm = request.alarm
        switch request.action {
        case .get:
            response.alarms = request.alarm == .none ? alarms : alarms.filter { $0.alarm == request.alarm }
        case .activate:
            guard request.alarm != .none else { break }
            if !alarms.contains(alarm) {
                do {
                    try alarmTable.insert(alarm)
                } catch {
                    throw .storage("\(error)")
                }
                alarms.append(alarm)
                alarms.sort { ($0.alarm.rawValue, $0.memberID) < ($1.alarm.rawValue, $1.memberID) }
                logger.warning("alarm raised", metadata: ["alarm": "\(alarm.alarm)", "from": "\(MemberID(alarm.memberID))"])
            }
            response.alarms = [alarm]
        case .deactivate:
            guard let position = alarms.firstIndex(of: alarm) else { break }
            do {
                try alarmTable.delete(alarm)
            } catch {
                throw .storage("\(error)")
            }
            alarms.remove(at: position)
            logger.warning("alarm disarmed", metadata: ["alarm": "\(alarm.alarm)", "from": "\(MemberID(alarm.memberID))"])
            response.alarms = [alarm]
        case .UNRECOGNIZED:
            break
        }
        response.header.revision = store.currentRevision
        return response
    }

    /// The error an alarm makes a request fail with at apply, as etcd's capped and corrupt
    /// appliers do: under CORRUPT every write and compaction; under NOSPACE puts, txns with a
    /// put and lease grants (deletes and compactions still free space).
    func alarmRefusal(_ request: Etcdserverpb_InternalRaftRequest) -> ReplicaError? {
        guard !alarms.isEmpty else { return nil }
        if isRaised(.corrupt),
            request.hasPut || request.hasDeleteRange || request.hasTxn || request.hasCompaction
                || request.hasLeaseGrant || request.hasLeaseRevoke
        {
            return .request(.corrupt)
        }
        if isRaised(.nospace),
            request.hasPut || request.hasLeaseGrant || (request.hasTxn && QuotaCost.of(request.txn) > 0)
        {
            return .request(.noSpace)
        }
        return nil
    }
}
