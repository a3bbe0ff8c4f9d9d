import EtcdTransport
import Foundation
import Synchronization

// In a release build the C time structs' members resolve to Foundation's CoreFoundation module,
// which member import visibility then wants imported by name.
#if canImport(CoreFoundation)
import CoreFoundation
#endif

/// Monotonic time and this process's CPU time, read straight from the kernel: the runner reads the
/// clock twice per request, so it must cost no allocation.
enum ProcessClock {
    /// CLOCK_MONOTONIC in nanoseconds.
    @inline(__always)
    static func nowNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// User and system CPU seconds this process has used so far (getrusage(RUSAGE_SELF)).
    static func cpuSeconds() -> (user: Double, system: Double) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return (seconds(usage.ru_utime), seconds(usage.ru_stime))
    }
}

/// Captures the tool's CPU time and connection counters at the start of a phase, to report what the
/// phase alone cost.
struct CostMeter {
    private let startCPU: (user: Double, system: Double)
    private let startGoaways: Int
    private let startPings: Int
    private let counters: HTTP2ConnectionCounters
    private let connectionCount: Int

    init(counters: HTTP2ConnectionCounters, connectionCount: Int) {
        self.counters = counters
        self.connectionCount = connectionCount
        startCPU = ProcessClock.cpuSeconds()
        startGoaways = counters.goawaysReceived.load(ordering: .relaxed)
        startPings = counters.pingsAnswered.load(ordering: .relaxed)
    }

    func read() -> ClientCost {
        let cpu = ProcessClock.cpuSeconds()
        let opened = counters.opened.load(ordering: .relaxed)
        var cost = ClientCost()
        cost.userSeconds = cpu.user - startCPU.user
        cost.systemSeconds = cpu.system - startCPU.system
        cost.connectionsOpened = opened
        // The run needs one connection per client; every one opened beyond that replaced a lost one.
        cost.reconnects = max(opened - connectionCount, 0)
        cost.goawaysReceived = counters.goawaysReceived.load(ordering: .relaxed) - startGoaways
        cost.pingsAnswered = counters.pingsAnswered.load(ordering: .relaxed) - startPings
        return cost
    }
}
