import HummingbirdBcrypt

/// Passwords are kept as bcrypt hashes (`--bcrypt-cost`, 4 to 31, etcd's default 10), by a
/// maintained implementation (OpenBSD's, through HummingbirdBcrypt). Both calls take tens of
/// milliseconds at the default cost: callers run them off the event loops.
public struct PasswordHasher: Sendable {
    public static let defaultCost = 10
    public static let costs = 4...31

    public let cost: Int

    /// A cost outside bcrypt's range is refused by the flag parser; here it falls back to the
    /// default, as etcd's store does.
    public init(cost: Int = PasswordHasher.defaultCost) {
        self.cost = Self.costs.contains(cost) ? cost : Self.defaultCost
    }

    public func hash(_ password: String) -> String {
        Bcrypt.hash(password, cost: UInt8(cost))
    }

    public func verify(_ password: String, hash: String) -> Bool {
        Bcrypt.verify(password, hash: hash)
    }
}
