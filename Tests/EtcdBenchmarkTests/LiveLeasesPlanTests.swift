import Testing

@testable import EtcdBenchmark

/// The `--live-leases` mode renews what it granted, each lease once per interval, and spreads the
/// load evenly; if the plan got that wrong, leases would expire or the rate would be off.
@Suite("lease-keepalive --live-leases plan")
struct LiveLeasesPlanTests {
    func plan(leases: Int, streams: Int) -> LiveLeasesPlan {
        LiveLeasesPlan(
            leases: leases, streams: streams, ttl: 30, renewIntervalSeconds: 10, holdSeconds: 60,
            idleSeconds: 0, drainTimeoutSeconds: 10, idBase: 1 << 40
        )
    }

    @Test("the streams share out every granted lease exactly once", arguments: [(10, 3), (100_000, 100), (7, 7)])
    func everyLeaseOnce(leases: Int, streams: Int) throws {
        let plan = plan(leases: leases, streams: streams)
        let ids = (0..<streams).flatMap { plan.leaseIDs(onStream: $0) }
        #expect(ids.count == leases)
        #expect(Set(ids) == Set((0..<leases).map { plan.idBase + Int64($0) }))
        let sizes = (0..<streams).map { plan.leaseIDs(onStream: $0).count }
        let largest = try #require(sizes.max())
        let smallest = try #require(sizes.min())
        #expect(largest - smallest <= 1)
    }

    @Test("a stream renews each of its leases once per interval, evenly spaced, offset from the other streams")
    func pacing() {
        let plan = plan(leases: 1_000, streams: 10)
        let perStream = 100
        // Keepalive `perStream` is the first lease's second renewal: one interval after its first.
        #expect(plan.dueNanoseconds(sequence: perStream, stream: 0, leasesOnStream: perStream) == 10_000_000_000)
        let gaps = (1..<perStream).map {
            plan.dueNanoseconds(sequence: $0, stream: 0, leasesOnStream: perStream)
                - plan.dueNanoseconds(sequence: $0 - 1, stream: 0, leasesOnStream: perStream)
        }
        #expect(gaps.allSatisfy { (99_999_999...100_000_001).contains($0) })
        // Stream 5 starts half a spacing after stream 0, so the streams interleave.
        #expect(plan.dueNanoseconds(sequence: 0, stream: 5, leasesOnStream: perStream) == 50_000_000)
    }
}
