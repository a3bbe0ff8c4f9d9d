import Synchronization

/// etcd's simple tokens on one member: `<16 random letters>.<raft index of the Authenticate
/// entry>`, assigned when that entry is applied (so every member knows every token) and kept in
/// memory only, with a sliding lifetime: each use gives a token `ttl` more (etcd's
/// `--auth-token-ttl`). Not replicated state: a restart forgets them, as etcd's do.
public final class SimpleTokenRegistry: Sendable {
    private struct Holder {
        var username: String
        var expiry: ContinuousClock.Instant
    }

    public let ttl: Duration
    private let tokens = Mutex<[String: Holder]>([:])

    public init(ttl: Duration = .seconds(300)) {
        self.ttl = ttl
    }

    /// How many letters a token starts with.
    public static let prefixLength = 16

    /// A new token's random part, drawn from the system's secure generator.
    public static func randomPrefix() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var generator = SystemRandomNumberGenerator()
        return String((0..<prefixLength).map { _ in letters[Int(generator.next(upperBound: UInt(letters.count)))] })
    }

    /// The raft index a token names, or nil if it is not shaped as a simple token.
    public static func index(of token: String) -> UInt64? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        return UInt64(parts[1])
    }

    public func assign(_ token: String, to username: String, now: ContinuousClock.Instant = .now) {
        tokens.withLock { $0[token] = Holder(username: username, expiry: now + ttl) }
    }

    /// The user `token` belongs to, its lifetime renewed; nil if unknown or expired.
    public func user(of token: String, now: ContinuousClock.Instant = .now) -> String? {
        tokens.withLock { tokens in
            guard var holder = tokens[token] else { return nil }
            guard holder.expiry > now else {
                tokens[token] = nil
                return nil
            }
            holder.expiry = now + ttl
            tokens[token] = holder
            return holder.username
        }
    }

    public func revokeTokens(of username: String) {
        tokens.withLock { tokens in tokens = tokens.filter { $0.value.username != username } }
    }

    public func revokeAll() {
        tokens.withLock { $0.removeAll() }
    }

    /// Forgets expired tokens (they are refused anyway; this bounds the memory they hold).
    public func sweep(now: ContinuousClock.Instant = .now) {
        tokens.withLock { tokens in tokens = tokens.filter { $0.value.expiry > now } }
    }

    public var count: Int { tokens.withLock { $0.count } }
}

/// What request handlers need of the auth store without taking the replica's lock: whether
/// auth is on and the store's revision (published by the replica after every change), and this
/// member's simple tokens. One per member, kept across backend swaps (snapshot installs).
public final class AuthBoard: Sendable {
    public let tokens: SimpleTokenRegistry
    private let enabledValue = Atomic<Bool>(false)
    private let revisionValue = Atomic<UInt64>(1)

    public init(tokens: SimpleTokenRegistry = SimpleTokenRegistry()) {
        self.tokens = tokens
    }

    public var isEnabled: Bool { enabledValue.load(ordering: .acquiring) }
    public var revision: UInt64 { revisionValue.load(ordering: .acquiring) }

    public func publish(_ store: AuthStore) {
        revisionValue.store(store.revision, ordering: .releasing)
        enabledValue.store(store.isEnabled, ordering: .releasing)
    }
}
