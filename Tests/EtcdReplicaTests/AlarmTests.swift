import EtcdAPI
import EtcdBackend
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Foundation
import Logging
import Testing

/// Alarms as applied entries (etcd's alarm store and its capped and corrupt appliers).
@Suite("Alarms")
struct AlarmTests {
    static func alarmEntry(_ action: Etcdserverpb_AlarmRequest.AlarmAction, _ type: Etcdserverpb_AlarmType, member: UInt64)
        -> Etcdserverpb_InternalRaftRequest
    {
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.alarm.action = action
        entry.alarm.alarm = type
        entry.alarm.memberID = member
        return entry
    }

    static func alarmResponse(_ result: ApplyResponse) throws -> [String] {
        guard case .alarm(let response) = result else { throw UnexpectedResponse(description: "\(result)") }
        return response.alarms.map { "\($0.memberID):\($0.alarm)" }
    }

    static func putEntry(_ key: String) -> Etcdserverpb_InternalRaftRequest {
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.put.key = data(key)
        entry.put.value = data("v")
        return entry
    }

    static func failure(_ result: Result<ApplyResponse, ReplicaError>) -> EtcdError? {
        if case .failure(.request(let error)) = result { return error }
        return nil
    }

    @Test("activate answers with the alarm (again when already raised), get lists, deactivate clears once; NONE is ignored")
    func lifecycle() throws {
        let test = try TestReplica()
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.get, .none, member: 0))) == [])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.activate, .none, member: 7))) == [])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.activate, .nospace, member: 7))) == ["7:nospace"])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.activate, .nospace, member: 7))) == ["7:nospace"])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.activate, .nospace, member: 3))) == ["3:nospace"])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.get, .none, member: 0))) == ["3:nospace", "7:nospace"])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.get, .corrupt, member: 0))) == [])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.deactivate, .nospace, member: 7))) == ["7:nospace"])
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.deactivate, .nospace, member: 7))) == [])
        #expect(test.replica.isRaised(.nospace))
        #expect(try Self.alarmResponse(test.apply(Self.alarmEntry(.deactivate, .nospace, member: 3))) == ["3:nospace"])
        #expect(!test.replica.isRaised(.nospace))
    }

    @Test("under NOSPACE puts, txns with puts and grants fail at apply; deletes, read-only txns and compactions do not; disarm restores writes")
    func noSpaceRefusals() throws {
        let test = try TestReplica()
        _ = try test.put("a", "1")
        _ = try test.apply(Self.alarmEntry(.activate, .nospace, member: 1))
        var txnWithPut = Etcdserverpb_InternalRaftRequest()
        var put = Etcdserverpb_RequestOp()
        put.requestPut.key = data("b")
        txnWithPut.txn.failure = [put]
        var readOnlyTxn = Etcdserverpb_InternalRaftRequest()
        var get = Etcdserverpb_RequestOp()
        get.requestRange.key = data("a")
        readOnlyTxn.txn.success = [get]
        var grant = Etcdserverpb_InternalRaftRequest()
        grant.leaseGrant.id = 9
        grant.leaseGrant.ttl = 60
        var delete = Etcdserverpb_InternalRaftRequest()
        delete.deleteRange.key = data("a")
        var compaction = Etcdserverpb_InternalRaftRequest()
        compaction.compaction.revision = 2
        let results = try test.applyEntries([Self.putEntry("x"), txnWithPut, grant, readOnlyTxn, delete, compaction])
        #expect(results.prefix(3).map(Self.failure) == [.noSpace, .noSpace, .noSpace])
        #expect(results.suffix(3).allSatisfy { (try? $0.get()) != nil })
        #expect(test.store.currentRevision == 3)  // the put at 2, the delete at 3
        _ = try test.apply(Self.alarmEntry(.deactivate, .nospace, member: 1))
        #expect(throws: Never.self) { try test.apply(Self.putEntry("x")) }
    }

    @Test("under CORRUPT every write and compaction fails at apply with 'corrupt cluster'")
    func corruptRefusals() throws {
        let test = try TestReplica()
        _ = try test.apply(Self.alarmEntry(.activate, .corrupt, member: 2))
        var delete = Etcdserverpb_InternalRaftRequest()
        delete.deleteRange.key = data("a")
        var compaction = Etcdserverpb_InternalRaftRequest()
        compaction.compaction.revision = 1
        let results = try test.applyEntries([Self.putEntry("x"), delete, compaction])
        #expect(results.map(Self.failure) == [.corrupt, .corrupt, .corrupt])
        #expect(test.store.currentRevision == 1)
    }

    @Test("alarms survive a restart (they are in the backend, committed with their entry)")
    func persistence() throws {
        try withTemporaryDirectory { directory in
            do {
                let test = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
                _ = try test.apply(Self.alarmEntry(.activate, .nospace, member: 5))
                _ = try test.apply(Self.alarmEntry(.activate, .corrupt, member: 6))
                _ = try test.apply(Self.alarmEntry(.deactivate, .corrupt, member: 6))
            }
            let reopened = try TestReplica(store: MVCCStore(backend: Backend(dataDirectory: directory)))
            #expect(reopened.replica.alarms.map { "\($0.memberID):\($0.alarm)" } == ["5:nospace"])
            #expect(Self.failure(try reopened.applyEntries([Self.putEntry("x")])[0]) == .noSpace)
        }
    }
}
