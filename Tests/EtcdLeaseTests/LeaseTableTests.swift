import EtcdBackend
import EtcdLease
import Testing

@Suite("LeaseTable")
struct LeaseTableTests {
    @Test("leases are saved, replaced, deleted and read back in ID order")
    func roundTrip() throws {
        let backend = try Backend(path: nil)
        let table = try LeaseTable(backend: backend)
        try backend.begin()
        try table.save(PersistedLease(id: LeaseID(9), ttl: 60, remainingTTL: 0))
        try table.save(PersistedLease(id: LeaseID(-3), ttl: 5, remainingTTL: 0))
        try table.save(PersistedLease(id: LeaseID(9), ttl: 60, remainingTTL: 42))
        try backend.commit()
        #expect(try table.all() == [
            PersistedLease(id: LeaseID(-3), ttl: 5, remainingTTL: 0), PersistedLease(id: LeaseID(9), ttl: 60, remainingTTL: 42),
        ])
        try backend.begin()
        try table.delete(LeaseID(-3))
        backend.rollback()
        #expect(try table.all().count == 2)
        try backend.begin()
        try table.delete(LeaseID(-3))
        try backend.commit()
        #expect(try table.all().map(\.id) == [LeaseID(9)])
    }
}
