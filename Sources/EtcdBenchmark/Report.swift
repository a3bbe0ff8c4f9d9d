import Foundation

/// The outcome of one measured phase, in the units etcd's `pkg/report` prints (seconds, with
/// percentiles in milliseconds), plus what the tool itself cost and what its connections went
/// through.
struct Report: Sendable {
    /// The percentiles etcd's report prints.
    static let percentiles: [Double] = [10, 25, 50, 75, 90, 95, 99, 99.9]

    var operation: String
    var latencies: LatencyRecorder
    var elapsedSeconds: Double
    var client: ClientCost

    var successes: Int { latencies.count }
    var errors: Int { latencies.errorCount }
    /// etcd counts only successful requests in Requests/sec.
    var requestsPerSecond: Double { elapsedSeconds > 0 ? Double(successes) / elapsedSeconds : 0 }

    /// Distinct error messages, most frequent first (ties by message, so output is stable).
    var errorDistribution: [(message: String, count: Int)] {
        latencies.errors.map { (message: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.message < $1.message }
    }

    /// The text etcd's benchmark prints, followed by this tool's own cost and connection health.
    func text() -> String {
        var out = ""
        if successes > 0 {
            out += "\nSummary:\n"
            out += "  Total:\t\(Self.seconds(elapsedSeconds)) secs.\n"
            out += "  Slowest:\t\(Self.seconds(nanoseconds: latencies.slowestNanoseconds)) secs.\n"
            out += "  Fastest:\t\(Self.seconds(nanoseconds: latencies.fastestNanoseconds)) secs.\n"
            out += "  Average:\t\(Self.seconds(latencies.meanNanoseconds / 1e9)) secs.\n"
            out += "  Stddev:\t\(Self.seconds(latencies.stddevNanoseconds / 1e9)) secs.\n"
            out += "  Requests/sec:\t\(Self.seconds(requestsPerSecond))\n"
            out += "\nResponse time histogram:\n"
            let buckets = latencies.buckets()
            let tallest = buckets.map(\.count).max() ?? 0
            for bucket in buckets {
                let bar = tallest > 0 ? String(repeating: "∎", count: bucket.count * 40 / tallest) : ""
                out += "  \(Self.seconds(bucket.upperNanoseconds / 1e9)) [\(bucket.count)]\t|\(bar)\n"
            }
            out += "\nLatency distribution:\n"
            for percentile in Self.percentiles {
                let milliseconds = Double(latencies.nanoseconds(atPercentile: percentile)) / 1e6
                out += "  \(Self.percentileLabel(percentile))% in \(String(format: "%.3f", milliseconds)) ms.\n"
            }
        }
        if errors > 0 {
            out += "\nError distribution:\n"
            for entry in errorDistribution {
                out += "  [\(entry.count)]\t\(entry.message)\n"
            }
        }
        out += "\nClient:\n"
        out += "  Requests:\t\(successes + errors) (\(errors) errors)\n"
        out += "  CPU:\t\(String(format: "%.3f", client.cpuSeconds)) secs"
        out += " (user \(String(format: "%.3f", client.userSeconds)), system \(String(format: "%.3f", client.systemSeconds)))\n"
        out += "  CPU per 1000 requests:\t\(String(format: "%.4f", cpuSecondsPer1000Requests)) secs\n"
        out += "  Connections:\t\(client.connectionsOpened) opened, \(client.reconnects) reconnects,"
        out += " \(client.goawaysReceived) GOAWAY received, \(client.pingsAnswered) pings answered\n"
        return out
    }

    var cpuSecondsPer1000Requests: Double {
        let requests = successes + errors
        return requests > 0 ? client.cpuSeconds * 1000 / Double(requests) : 0
    }

    /// One JSON object with the same figures; latencies in milliseconds.
    func json() -> [String: Any] {
        var percentileObject: [String: Double] = [:]
        for percentile in Self.percentiles {
            percentileObject["p" + Self.percentileLabel(percentile)] =
                Double(latencies.nanoseconds(atPercentile: percentile)) / 1e6
        }
        let hasSamples = successes > 0
        return [
            "operation": operation,
            "total_requests": successes + errors,
            "successes": successes,
            "errors": errors,
            "error_distribution": errorDistribution.map { ["message": $0.message, "count": $0.count] },
            "elapsed_seconds": elapsedSeconds,
            "requests_per_second": requestsPerSecond,
            "latency_ms": [
                "fastest": hasSamples ? Double(latencies.fastestNanoseconds) / 1e6 : 0,
                "slowest": hasSamples ? Double(latencies.slowestNanoseconds) / 1e6 : 0,
                "average": latencies.meanNanoseconds / 1e6,
                "stddev": latencies.stddevNanoseconds / 1e6,
                "percentiles": percentileObject,
            ] as [String: Any],
            "client_cpu_seconds": client.cpuSeconds,
            "client_cpu_user_seconds": client.userSeconds,
            "client_cpu_system_seconds": client.systemSeconds,
            "client_cpu_seconds_per_1000_requests": cpuSecondsPer1000Requests,
            "connections_opened": client.connectionsOpened,
            "reconnects": client.reconnects,
            "goaways_received": client.goawaysReceived,
            "pings_answered": client.pingsAnswered,
        ]
    }

    /// etcd's `%4.4f`.
    static func seconds(_ value: Double) -> String { String(format: "%4.4f", value) }
    static func seconds(nanoseconds: UInt64) -> String { seconds(Double(nanoseconds) / 1e9) }

    /// Go's `%v` of the percentile: `10`, `99.9`.
    static func percentileLabel(_ percentile: Double) -> String {
        percentile == percentile.rounded() ? String(Int(percentile)) : String(percentile)
    }
}

/// What the benchmark tool itself spent, and what its connections went through, during a phase.
struct ClientCost: Sendable {
    var userSeconds = 0.0
    var systemSeconds = 0.0
    var connectionsOpened = 0
    var reconnects = 0
    var goawaysReceived = 0
    var pingsAnswered = 0

    var cpuSeconds: Double { userSeconds + systemSeconds }
}

/// Serialises reports as one JSON object with sorted keys.
func renderJSON(_ object: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
        let text = String(data: data, encoding: .utf8)
    else { return "{}" }
    return text
}
