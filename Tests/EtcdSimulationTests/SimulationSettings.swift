import Foundation

/// Reads the simulation's environment variables:
/// - `SEED=n` replays exactly one seed and prints its full trace;
/// - `SIM_SEEDS` (default 2000) seeds per run, `SIM_STEPS` (default 2000) steps per seed;
/// - `SIM_FIRST_SEED` the first seed (default 1; `random` draws one and prints it);
/// Seeds of a run are `first, first + 1, ...`; the simulator mixes each through SplitMix64.
enum SimulationSettings {
    static let environment = ProcessInfo.processInfo.environment

    static let replaySeed: UInt64? = environment["SEED"].flatMap(parseSeed)
    static let seedCount: Int = environment["SIM_SEEDS"].flatMap { Int($0) } ?? 2000
    static let steps: Int = environment["SIM_STEPS"].flatMap { Int($0) } ?? 2000
    static let firstSeed: UInt64 = {
        guard let text = environment["SIM_FIRST_SEED"] else { return 1 }
        if text == "random" {
            // Only the choice of seeds is random; each run is still determined by its seed.
            return UInt64.random(in: 0...UInt64.max)
        }
        return parseSeed(text) ?? 1
    }()

    /// Decimal, or hexadecimal with a 0x prefix.
    static func parseSeed(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }
}

/// Prints which seeds were running if the process dies on a trap (a `precondition` in EtcdRaft
/// or in the simulator), so that a crash is as reproducible as a failed check.
///
/// The handler only reads a preallocated table and calls `write`, which is async-signal-safe,
/// then puts the previous handler back and returns; the faulting instruction runs again and
/// the previous handler (the Swift runtime's backtracer) reports the crash as usual.
enum CrashSeedReporter {
    static let slotCount = 64
    /// Current seed per shard, `UInt64.max` = idle. Written by one shard each, read only by the
    /// signal handler, which tolerates a torn read.
    nonisolated(unsafe) static let seeds: UnsafeMutablePointer<UInt64> = {
        let pointer = UnsafeMutablePointer<UInt64>.allocate(capacity: slotCount)
        pointer.initialize(repeating: UInt64.max, count: slotCount)
        return pointer
    }()
    nonisolated(unsafe) static let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 64 * 24 + 128)
    static let signals: [Int32] = [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS]
    /// The handlers we replaced, by position in `signals`; written once before any signal.
    nonisolated(unsafe) static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 5)

    /// Installs the handler once (the first use wins; later uses are no-ops).
    static let install: Void = {
        for (position, signalNumber) in signals.enumerated() {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signalNumber in CrashSeedReporter.handle(signalNumber) }
            sigemptyset(&action.sa_mask)
            var old = sigaction()
            sigaction(signalNumber, &action, &old)
            (previous + position).initialize(to: old)
        }
    }()

    static func set(slot: Int, seed: UInt64?) {
        seeds[slot % slotCount] = seed ?? UInt64.max
    }

    private static func handle(_ signalNumber: Int32) {
        var length = 0
        func put(_ byte: UInt8) {
            buffer[length] = byte
            length += 1
        }
        for byte in "\nSIMULATION CRASHED while running SEED=".utf8 { put(byte) }
        var first = true
        for slot in 0..<slotCount where seeds[slot] != UInt64.max {
            if !first { for byte in " SEED=".utf8 { put(byte) } }
            first = false
            // Digits are written backwards into place: no allocation inside a signal handler.
            var value = seeds[slot]
            var digitCount = 1
            while value >= 10 {
                value /= 10
                digitCount += 1
            }
            value = seeds[slot]
            for position in stride(from: length + digitCount - 1, through: length, by: -1) {
                buffer[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
            length += digitCount
        }
        put(UInt8(ascii: "\n"))
        _ = write(2, buffer, length)
        for position in 0..<signals.count where signals[position] == signalNumber {
            sigaction(signalNumber, previous + position, nil)
        }
    }
}
