import Foundation
import Prometheus

/// The process figures Prometheus's Go client exports for every Go program (etcd's dashboards
/// chart `process_resident_memory_bytes`), read from /proc when scraped; on a system without
/// /proc they are left out.
struct ProcessMetrics: Sendable {
    private let residentMemory: Prometheus.Gauge
    private let virtualMemory: Prometheus.Gauge
    private let openFileDescriptors: Prometheus.Gauge
    private let cpuSeconds: Prometheus.Gauge
    private let startTime: Prometheus.Gauge

    init(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ help: String) -> Prometheus.Gauge { registry.makeGauge(descriptor: .etcd(name, help)) }
        residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        virtualMemory = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        openFileDescriptors = gauge("process_open_fds", "Number of open file descriptors.")
        cpuSeconds = gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
        startTime = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
    }

    func refresh() {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8)
        else { return }
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 (man 5 proc).
        guard let close = stat.lastIndex(of: ")") else { return }
        let fields = stat[stat.index(after: close)...].split(separator: " ").map(String.init)
        func field(_ number: Int) -> Double? { fields.indices.contains(number - 3) ? Double(fields[number - 3]) : nil }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageBytes = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let user = field(14), let system = field(15) { cpuSeconds.set((user + system) / ticksPerSecond) }
        if let virtual = field(23) { virtualMemory.set(virtual) }
        if let pages = field(24) { residentMemory.set(pages * pageBytes) }
        if let started = field(22), let machineUp = uptime.split(separator: " ").first.flatMap({ Double($0) }) {
            // Boot time plus the ticks after boot at which the process started.
            let bootTime = Date().timeIntervalSince1970 - machineUp
            startTime.set(bootTime + started / ticksPerSecond)
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openFileDescriptors.set(Double(descriptors.count))
        }
    }
}
