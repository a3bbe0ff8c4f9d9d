import Histogram

/// What one client measured: a latency histogram for successful requests and a tally of errors.
///
/// Each client task owns one recorder and nothing is shared while requests run; the recorders are
/// merged once at the end. Latencies go into an HdrHistogram (3 significant digits, so every
/// percentile is within 0.1% of etcd's exact nearest-rank figure), while the fastest, slowest, mean
/// and standard deviation are kept exactly, as etcd's `pkg/report` computes them from every sample.
struct LatencyRecorder: Sendable {
    /// One hour in nanoseconds: anything slower is clamped (and would be a failed run anyway).
    static let highestTrackableNanoseconds: UInt64 = 3_600_000_000_000

    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1,
        highestTrackableValue: LatencyRecorder.highestTrackableNanoseconds,
        numberOfSignificantValueDigits: .three
    )
    private(set) var count = 0
    /// Welford's running mean and sum of squared deviations, in nanoseconds; merged with Chan's
    /// parallel formula so that merging many clients stays numerically stable.
    private(set) var meanNanoseconds = 0.0
    private(set) var squaredDeviationsNanoseconds = 0.0
    private(set) var fastestNanoseconds = UInt64.max
    private(set) var slowestNanoseconds: UInt64 = 0
    /// Distinct error messages with how often each was seen.
    private(set) var errors: [String: Int] = [:]

    var errorCount: Int { errors.values.reduce(0, +) }

    mutating func record(nanoseconds: UInt64) {
        let value = min(max(nanoseconds, 1), Self.highestTrackableNanoseconds)
        histogram.record(value)
        count += 1
        let sample = Double(value)
        let delta = sample - meanNanoseconds
        meanNanoseconds += delta / Double(count)
        squaredDeviationsNanoseconds += delta * (sample - meanNanoseconds)
        fastestNanoseconds = min(fastestNanoseconds, value)
        slowestNanoseconds = max(slowestNanoseconds, value)
    }

    mutating func recordError(_ message: String) {
        errors[message, default: 0] += 1
    }

    mutating func merge(_ other: LatencyRecorder) {
        guard other.count > 0 || !other.errors.isEmpty else { return }
        histogram.add(other.histogram)
        if other.count > 0 {
            let total = count + other.count
            let delta = other.meanNanoseconds - meanNanoseconds
            let mergedMean = meanNanoseconds + delta * Double(other.count) / Double(total)
            squaredDeviationsNanoseconds +=
                other.squaredDeviationsNanoseconds + delta * delta * Double(count) * Double(other.count)
                / Double(total)
            meanNanoseconds = mergedMean
            count = total
            fastestNanoseconds = min(fastestNanoseconds, other.fastestNanoseconds)
            slowestNanoseconds = max(slowestNanoseconds, other.slowestNanoseconds)
        }
        for (message, seen) in other.errors {
            errors[message, default: 0] += seen
        }
    }

    /// Population standard deviation, as etcd's report computes it.
    var stddevNanoseconds: Double {
        count > 0 ? (squaredDeviationsNanoseconds / Double(count)).squareRoot() : 0
    }

    /// The latency at `percentile` (0–100), clamped to the exact fastest and slowest samples.
    func nanoseconds(atPercentile percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        return min(max(histogram.valueAtPercentile(percentile), fastestNanoseconds), slowestNanoseconds)
    }

    /// etcd's response-time histogram: ten equal-width buckets between the fastest and slowest
    /// latency plus one ending at the slowest; each bucket counts samples above the previous bound
    /// and at most its own.
    func buckets(count bucketCount: Int = 10) -> [(upperNanoseconds: Double, count: Int)] {
        guard count > 0 else { return [] }
        let fastest = Double(fastestNanoseconds)
        let slowest = Double(slowestNanoseconds)
        let width = (slowest - fastest) / Double(bucketCount)
        var bounds = (0..<bucketCount).map { fastest + width * Double($0) }
        bounds.append(slowest)
        var counts = [Int](repeating: 0, count: bounds.count)
        for recorded in histogram.recordedValues() {
            // The equivalence range's middle; the ranges holding the exact fastest and slowest
            // samples stand for those, so the end buckets hold them as etcd's do.
            let value: Double
            if Double(histogram.highestEquivalentForValue(recorded.value)) >= slowest {
                value = slowest
            } else if Double(histogram.lowestEquivalentForValue(recorded.value)) <= fastest {
                value = fastest
            } else {
                value = Double(histogram.medianEquivalentForValue(recorded.value))
            }
            let index = bounds.firstIndex { value <= $0 } ?? bounds.count - 1
            counts[index] += Int(recorded.count)
        }
        return zip(bounds, counts).map { (upperNanoseconds: $0, count: $1) }
    }
}
