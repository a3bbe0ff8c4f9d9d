/// A point in the store's history: `main` is the store revision a write transaction produced and
/// `sub` orders the changes inside that transaction (etcd's `revision{main, sub}`).
public struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The store revision (etcd's `mod_revision` of a change).
    public var main: Int64
    /// The position of the change inside its transaction, from 0.
    public var sub: Int64

    /// Creates a revision.
    public init(main: Int64, sub: Int64) {
        self.main = main
        self.sub = sub
    }

    public static func < (lhs: Revision, rhs: Revision) -> Bool {
        lhs.main != rhs.main ? lhs.main < rhs.main : lhs.sub < rhs.sub
    }

    public var description: String { "\(main).\(sub)" }
}
