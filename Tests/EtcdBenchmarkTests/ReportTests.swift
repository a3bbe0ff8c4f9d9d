import Testing

@testable import EtcdBenchmark

@Suite("Benchmark report")
struct ReportTests {
    @Test("Exact fastest, slowest, mean and population stddev across merged recorders")
    func mergedStatistics() {
        var first = LatencyRecorder()
        var second = LatencyRecorder()
        for value: UInt64 in [1_000_000, 2_000_000] { first.record(nanoseconds: value) }
        for value: UInt64 in [3_000_000, 4_000_000] { second.record(nanoseconds: value) }
        first.merge(second)
        #expect(first.count == 4)
        #expect(first.fastestNanoseconds == 1_000_000)
        #expect(first.slowestNanoseconds == 4_000_000)
        #expect(abs(first.meanNanoseconds - 2_500_000) < 1)
        // Population stddev of 1,2,3,4 ms is sqrt(1.25) ms.
        #expect(abs(first.stddevNanoseconds - 1.25.squareRoot() * 1_000_000) < 1)
    }

    @Test("Percentiles within HdrHistogram's 0.1% of the nearest rank")
    func percentiles() {
        var recorder = LatencyRecorder()
        for millisecond in 1...1000 { recorder.record(nanoseconds: UInt64(millisecond) * 1_000_000) }
        let p50 = Double(recorder.nanoseconds(atPercentile: 50))
        let p99 = Double(recorder.nanoseconds(atPercentile: 99))
        #expect(abs(p50 - 500_000_000) / 500_000_000 < 0.002)
        #expect(abs(p99 - 990_000_000) / 990_000_000 < 0.002)
        #expect(recorder.nanoseconds(atPercentile: 100) == 1_000_000_000)
    }

    @Test("Eleven histogram buckets from fastest to slowest that hold every sample")
    func buckets() {
        var recorder = LatencyRecorder()
        for millisecond in 1...100 { recorder.record(nanoseconds: UInt64(millisecond) * 1_000_000) }
        let buckets = recorder.buckets()
        #expect(buckets.count == 11)
        #expect(buckets.map(\.count).reduce(0, +) == 100)
        #expect(buckets.first?.upperNanoseconds == 1_000_000)
        #expect(buckets.last?.upperNanoseconds == 100_000_000)
        // etcd's first bucket holds only samples at the fastest latency.
        #expect(buckets.first?.count == 1)
    }

    @Test("Text report has etcd's sections and the client's own cost")
    func text() {
        var recorder = LatencyRecorder()
        recorder.record(nanoseconds: 2_000_000)
        recorder.recordError("rpc error: code = unavailable desc = gone")
        recorder.recordError("rpc error: code = unavailable desc = gone")
        var cost = ClientCost()
        cost.userSeconds = 0.5
        let report = Report(operation: "put", latencies: recorder, elapsedSeconds: 0.5, client: cost)
        let text = report.text()
        #expect(text.contains("  Requests/sec:\t2.0000\n"))
        #expect(text.contains("  99.9% in 2.000 ms.\n"))
        #expect(text.contains("  [2]\trpc error: code = unavailable desc = gone\n"))
        #expect(text.contains("Response time histogram:"))
        #expect(report.errors == 2)
        #expect(abs(report.cpuSecondsPer1000Requests - 0.5 * 1000 / 3) < 1e-9)
    }

    @Test("Keys are Go zig-zag varints, and the key space must fit the key size")
    func keys() {
        var key = [UInt8](repeating: 0, count: 4)
        KeyEncoding.put(1, into: &key)
        #expect(key == [2, 0, 0, 0])
        KeyEncoding.put(300, into: &key)
        #expect(key == [0xD8, 0x04, 0, 0])
        #expect(KeyEncoding.validate(keySize: 1, keySpaceSize: 64) == nil)
        #expect(KeyEncoding.validate(keySize: 1, keySpaceSize: 65) != nil)
    }

    @Test("Endpoints parse with and without a scheme")
    func endpoints() throws {
        #expect(try Endpoint(parsing: "127.0.0.1:2379") == Endpoint(host: "127.0.0.1", port: 2379))
        #expect(try Endpoint(parsing: "https://[::1]:4000") == Endpoint(host: "::1", port: 4000, isHTTPS: true))
        #expect(throws: (any Error).self) { try Endpoint(parsing: "localhost") }
    }
}
