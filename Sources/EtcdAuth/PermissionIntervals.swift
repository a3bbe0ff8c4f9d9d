/// The keys one user may read (or write): the union of the key permissions of all the user's
/// roles, kept as sorted, disjoint, non-adjacent half-open intervals, so that a requested range
/// is allowed exactly when one interval covers it whole (etcd's per-user interval tree, checked
/// for "covered by the union").
public struct PermissionIntervals: Sendable, Equatable {
    /// One interval `[start, end)`; a nil `end` reaches past every key.
    struct Interval: Sendable, Equatable {
        var start: [UInt8]
        var end: [UInt8]?
    }

    private(set) var intervals: [Interval] = []

    public init() {}

    /// The interval a permission grants: a single key is `[key, key + 0x00)`, a `rangeEnd` of
    /// one zero byte is open-ended, anything else is `[key, rangeEnd)`. An empty or inverted
    /// interval grants nothing.
    public mutating func add(key: [UInt8], rangeEnd: [UInt8]) {
        let end: [UInt8]?
        if rangeEnd.isEmpty {
            end = key + [0]
        } else if rangeEnd == [0] {
            end = nil
        } else {
            end = rangeEnd
        }
        if let end, !key.lexicographicallyPrecedes(end) { return }
        insert(Interval(start: key, end: end))
    }

    private mutating func insert(_ new: Interval) {
        var merged = new
        var kept: [Interval] = []
        kept.reserveCapacity(intervals.count + 1)
        for interval in intervals {
            if Self.touches(interval, merged) {
                if interval.start.lexicographicallyPrecedes(merged.start) { merged.start = interval.start }
                merged.end = Self.later(interval.end, merged.end)
            } else {
                kept.append(interval)
            }
        }
        let position = kept.firstIndex { merged.start.lexicographicallyPrecedes($0.start) } ?? kept.endIndex
        kept.insert(merged, at: position)
        intervals = kept
    }

    /// Whether the two overlap or meet end to start (then they merge into one).
    private static func touches(_ a: Interval, _ b: Interval) -> Bool {
        !isBefore(a.end, b.start) && !isBefore(b.end, a.start)
    }

    /// Whether an interval ending at `end` ends strictly before `start` (a gap between them).
    private static func isBefore(_ end: [UInt8]?, _ start: [UInt8]) -> Bool {
        guard let end else { return false }
        return end.lexicographicallyPrecedes(start)
    }

    private static func later(_ a: [UInt8]?, _ b: [UInt8]?) -> [UInt8]? {
        guard let a, let b else { return nil }
        return a.lexicographicallyPrecedes(b) ? b : a
    }

    /// Whether the request's keys are all covered: a single `key` when `rangeEnd` is empty, every
    /// key from `key` on when it is one zero byte, otherwise `[key, rangeEnd)`.
    public func covers(key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        // The interval that could hold `key`: the last one starting at or before it.
        guard let index = intervals.lastIndex(where: { !key.lexicographicallyPrecedes($0.start) }) else { return false }
        let interval = intervals[index]
        if let end = interval.end, !key.lexicographicallyPrecedes(end) { return false }
        if rangeEnd.isEmpty { return true }
        guard let end = interval.end else { return true }
        if rangeEnd == [0] { return false }
        return !end.lexicographicallyPrecedes(rangeEnd)
    }

    public var isEmpty: Bool { intervals.isEmpty }
}
