/// A lease's identity, as clients see it (`int64` in etcd's API; 0 means "no lease").
///
/// Kept here rather than in EtcdCommon so that the lessor stays free of gRPC: EtcdCommon
/// carries the error catalog and with it GRPCCore.
public struct LeaseID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// etcd's `NoLease`.
    public static let none = LeaseID(0)

    public static func < (lhs: LeaseID, rhs: LeaseID) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Sixteen lower-case hex digits, as etcdctl prints lease IDs.
    public var description: String {
        let hex = String(UInt64(bitPattern: rawValue), radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }
}

/// A point on the leader's monotonic clock: nanoseconds since an origin the shell chooses (its
/// start, say). The lessor never reads a clock; every method that depends on time is handed one
/// of these, so tests drive it with a fake clock and no sleeps.
public struct MonotonicTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = MonotonicTime(nanoseconds: 0)

    public static func < (lhs: MonotonicTime, rhs: MonotonicTime) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public static func + (lhs: MonotonicTime, rhs: Duration) -> MonotonicTime {
        MonotonicTime(nanoseconds: lhs.nanoseconds.addingSaturating(rhs.nanoseconds))
    }

    /// How long from `self` to `later` (negative when `later` is earlier).
    public func duration(to later: MonotonicTime) -> Duration {
        .nanoseconds(later.nanoseconds - nanoseconds)
    }

    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// The whole duration in nanoseconds, saturating at `Int64`'s bounds.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return scaled.addingSaturating(attoseconds / 1_000_000_000)
    }
}

extension Int64 {
    func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        if overflow { return other > 0 ? .max : .min }
        return sum
    }
}

/// Why the lessor refused an applied request; the replica maps these to etcd's errors.
public enum LeaseError: Error, Hashable, Sendable {
    /// No lease with that ID (etcd's `ErrLeaseNotFound`); also a grant of ID 0.
    case notFound
    /// A grant of an ID that is already granted (`ErrLeaseExists`).
    case exists
    /// A grant above ``Lessor/maxTTLSeconds`` (`ErrLeaseTTLTooLarge`).
    case ttlTooLarge
}
