import EtcdAPI
import EtcdAuth
import EtcdBackend
import EtcdCommon
import Foundation
import Testing

@Suite("Key permissions as merged intervals")
struct PermissionIntervalsTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("a single key, a range and an open end grant what etcd's permissions grant")
    func grants() {
        var intervals = PermissionIntervals()
        intervals.add(key: bytes("foo"), rangeEnd: [])
        intervals.add(key: bytes("c"), rangeEnd: bytes("d"))
        intervals.add(key: bytes("x"), rangeEnd: [0])
        #expect(intervals.covers(key: bytes("foo"), rangeEnd: []))
        #expect(!intervals.covers(key: bytes("fo"), rangeEnd: []))
        #expect(!intervals.covers(key: bytes("foo1"), rangeEnd: []))
        #expect(intervals.covers(key: bytes("c1"), rangeEnd: []))
        #expect(intervals.covers(key: bytes("c"), rangeEnd: bytes("d")))
        #expect(!intervals.covers(key: bytes("c"), rangeEnd: bytes("e")))
        #expect(!intervals.covers(key: bytes("c"), rangeEnd: [0]))
        #expect(intervals.covers(key: bytes("x"), rangeEnd: [0]))
        #expect(intervals.covers(key: bytes("zzz"), rangeEnd: []))
        #expect(!intervals.covers(key: bytes("d"), rangeEnd: []))
    }

    @Test("permissions that meet or overlap cover a range together; a gap does not")
    func union() {
        var intervals = PermissionIntervals()
        intervals.add(key: bytes("a"), rangeEnd: bytes("c"))
        intervals.add(key: bytes("c"), rangeEnd: bytes("e"))
        intervals.add(key: bytes("b"), rangeEnd: bytes("d"))
        #expect(intervals.covers(key: bytes("a"), rangeEnd: bytes("e")))
        intervals.add(key: bytes("f"), rangeEnd: bytes("g"))
        #expect(!intervals.covers(key: bytes("a"), rangeEnd: bytes("g")))
        intervals.add(key: bytes("e"), rangeEnd: bytes("f"))
        #expect(intervals.covers(key: bytes("a"), rangeEnd: bytes("g")))
        // An inverted or empty range grants nothing.
        var none = PermissionIntervals()
        none.add(key: bytes("b"), rangeEnd: bytes("a"))
        #expect(none.isEmpty)
    }
}

@Suite("The auth store")
struct AuthStoreTests {
    private func permission(_ type: Authpb_Permission.TypeEnum, _ key: String, _ rangeEnd: String = "") -> Authpb_Permission {
        var permission = Authpb_Permission()
        permission.permType = type
        permission.key = Data(key.utf8)
        permission.rangeEnd = Data(rangeEnd.utf8)
        return permission
    }

    @Test("the auth revision moves as etcd's does: changes count, no-ops, enabling and logins do not")
    func revisionSequence() throws {
        var store = AuthStore()
        #expect(store.revision == 1)
        _ = try store.addUser("alice", passwordHash: "h", noPassword: false)
        #expect(store.revision == 2)
        _ = try store.addRole("r1")
        #expect(store.revision == 3)
        _ = try store.grantRole("r1", to: "alice")
        #expect(store.revision == 4)
        _ = try store.grantRole("r1", to: "alice")
        #expect(store.revision == 4)
        _ = try store.addUser("root", passwordHash: "h", noPassword: false)
        _ = try store.grantRole("root", to: "root")
        #expect(store.revision == 6)
        _ = try store.revokeRole("r1", from: "alice")
        #expect(store.revision == 7)
        _ = try store.grantPermission(permission(.read, "foo"), to: "r1")
        _ = try store.grantPermission(permission(.read, "foo"), to: "r1")
        #expect(store.revision == 9)
        _ = try store.revokePermission(key: Array("foo".utf8), rangeEnd: [], from: "r1")
        #expect(store.revision == 10)
        _ = try store.changePassword(of: "alice", passwordHash: "h2")
        #expect(store.revision == 11)
        let enabled = try store.enable()
        #expect(store.revision == 11 && store.isEnabled && enabled.metaChanged)
        _ = try store.deleteRole("r1")
        #expect(store.revision == 12)
        let disabled = store.disable()
        #expect(store.revision == 13 && !store.isEnabled && disabled.revokesAllTokens)
        _ = try store.enable()
        #expect(store.revision == 13)
    }

    @Test("etcd's refusals: no root, root without its role, root protected while enabled, missing names")
    func refusals() throws {
        var store = AuthStore()
        #expect(throws: EtcdError.rootUserNotExist) { _ = try store.enable() }
        _ = try store.addUser("root", passwordHash: "h", noPassword: false)
        #expect(throws: EtcdError.rootRoleNotExist) { _ = try store.enable() }
        #expect(throws: EtcdError.userEmpty) { _ = try store.addUser("", passwordHash: nil, noPassword: true) }
        #expect(throws: EtcdError.userAlreadyExists) { _ = try store.addUser("root", passwordHash: nil, noPassword: true) }
        #expect(throws: EtcdError.roleEmpty) { _ = try store.addRole("") }
        #expect(throws: EtcdError.roleNotFound) { _ = try store.grantRole("nothing", to: "root") }
        #expect(throws: EtcdError.userNotFound) { _ = try store.grantRole("root", to: "nobody") }
        _ = try store.grantRole("root", to: "root")
        _ = try store.enable()
        #expect(throws: EtcdError.invalidAuthManagement) { _ = try store.deleteUser("root") }
        #expect(throws: EtcdError.invalidAuthManagement) { _ = try store.revokeRole("root", from: "root") }
        #expect(throws: EtcdError.invalidAuthManagement) { _ = try store.deleteRole("root") }
        _ = try store.addRole("r")
        #expect(throws: EtcdError.roleNotGranted) { _ = try store.revokeRole("r", from: "root") }
        #expect(throws: EtcdError.permissionNotGranted) { _ = try store.revokePermission(key: [1], rangeEnd: [], from: "r") }
        // etcd 3.5's range check of a grant.
        #expect(throws: EtcdError.invalidAuthManagement) { _ = try store.grantPermission(permission(.read, "b", "a"), to: "r") }
        #expect(throws: EtcdError.invalidAuthManagement) { _ = try store.grantPermission(permission(.read, ""), to: "r") }
    }

    @Test("key checks: no identity, a stale one, an unknown user, an admin, and granted ranges")
    func keyChecks() throws {
        var store = AuthStore()
        _ = try store.addUser("root", passwordHash: "h", noPassword: false)
        _ = try store.grantRole("root", to: "root")
        _ = try store.addUser("alice", passwordHash: "h", noPassword: false)
        _ = try store.addRole("r")
        _ = try store.grantPermission(permission(.readwrite, "foo"), to: "r")
        _ = try store.grantPermission(permission(.write, "foo"), to: "r")
        _ = try store.grantPermission(permission(.read, "c", "d"), to: "r")
        _ = try store.grantRole("r", to: "alice")
        // Granting `write` over `readwrite` on the same key replaces it.
        #expect(store.roles["r"]?.keyPermission.count == 2)
        // Without auth, anything goes.
        try store.checkKeys(.none, .write, key: Array("zzz".utf8), rangeEnd: [])
        _ = try store.enable()
        let current = store.revision
        let alice = AuthIdentity(username: "alice", revision: current)
        #expect(throws: EtcdError.userEmpty) { try store.checkKeys(.none, .read, key: Array("foo".utf8), rangeEnd: []) }
        #expect(throws: EtcdError.authOldRevision) {
            try store.checkKeys(AuthIdentity(username: "alice", revision: current - 1), .read, key: Array("c1".utf8), rangeEnd: [])
        }
        #expect(throws: EtcdError.permissionDenied) {
            try store.checkKeys(AuthIdentity(username: "ghost", revision: current), .read, key: Array("c1".utf8), rangeEnd: [])
        }
        try store.checkKeys(alice, .write, key: Array("foo".utf8), rangeEnd: [])
        #expect(throws: EtcdError.permissionDenied) { try store.checkKeys(alice, .read, key: Array("foo".utf8), rangeEnd: []) }
        try store.checkKeys(alice, .read, key: Array("c".utf8), rangeEnd: Array("d".utf8))
        #expect(throws: EtcdError.permissionDenied) { try store.checkKeys(alice, .write, key: Array("c1".utf8), rangeEnd: []) }
        try store.checkKeys(AuthIdentity(username: "root", revision: current), .write, key: [0], rangeEnd: [0])
        #expect(throws: EtcdError.permissionDenied) { try store.checkAdmin(alice) }
        #expect(throws: EtcdError.userNotFound) { try store.checkAdmin(AuthIdentity(username: "ghost", revision: current)) }
        try store.checkUserGet(alice, name: "alice")
        #expect(throws: EtcdError.permissionDenied) { try store.checkUserGet(alice, name: "root") }
        try store.checkRoleGet(alice, name: "r")
        #expect(throws: EtcdError.permissionDenied) { try store.checkRoleGet(alice, name: "root") }
        // Deleting the role takes its permissions from alice.
        _ = try store.deleteRole("r")
        #expect(store.users["alice"]?.roles == [])
        #expect(throws: EtcdError.permissionDenied) {
            try store.checkKeys(AuthIdentity(username: "alice", revision: store.revision), .write, key: Array("foo".utf8), rangeEnd: [])
        }
    }

    @Test("logins: auth off, unknown users and users without a password are refused")
    func passwords() throws {
        var store = AuthStore()
        _ = try store.addUser("root", passwordHash: "hash", noPassword: false)
        _ = try store.addUser("cert", passwordHash: nil, noPassword: true)
        _ = try store.grantRole("root", to: "root")
        #expect(throws: EtcdError.authNotEnabled) { _ = try store.passwordHash(of: "root") }
        _ = try store.enable()
        #expect(try store.passwordHash(of: "root") == "hash")
        #expect(throws: EtcdError.authFailed) { _ = try store.passwordHash(of: "nobody") }
        #expect(throws: EtcdError.noPasswordUser) { _ = try store.passwordHash(of: "cert") }
    }

    @Test("the store survives the backend: what a change saves is what loads again")
    func persistence() throws {
        let backend = try Backend(path: nil)
        let table = try AuthTable(backend: backend)
        #expect(try table.load().revision == 1)
        var store = AuthStore()
        for step in [
            { (store: inout AuthStore) in try store.addUser("root", passwordHash: "h", noPassword: false) },
            { (store: inout AuthStore) in try store.addUser("alice", passwordHash: nil, noPassword: true) },
            { (store: inout AuthStore) in try store.addRole("r") },
            { (store: inout AuthStore) in try store.grantPermission(permission(.read, "a", "b"), to: "r") },
            { (store: inout AuthStore) in try store.grantRole("r", to: "alice") },
            { (store: inout AuthStore) in try store.grantRole("root", to: "root") },
            { (store: inout AuthStore) in try store.enable() },
            { (store: inout AuthStore) in try store.addRole("gone") },
            { (store: inout AuthStore) in try store.deleteRole("gone") },
        ] {
            let change = try step(&store)
            try table.save(change, of: store)
        }
        let loaded = try table.load()
        #expect(loaded.isEnabled && loaded.revision == store.revision)
        #expect(loaded.users == store.users && loaded.roles == store.roles)
        try loaded.checkKeys(AuthIdentity(username: "alice", revision: loaded.revision), .read, key: Array("a".utf8), rangeEnd: [])
    }
}

@Suite("Simple tokens and passwords")
struct TokenTests {
    @Test("a token names its index, lives its TTL from its last use, and goes with its user or with auth")
    func lifetime() {
        let registry = SimpleTokenRegistry(ttl: .seconds(10))
        let prefix = SimpleTokenRegistry.randomPrefix()
        #expect(prefix.count == 16 && prefix.allSatisfy(\.isLetter))
        #expect(SimpleTokenRegistry.index(of: prefix + ".42") == 42)
        #expect(SimpleTokenRegistry.index(of: "nodot") == nil)
        #expect(SimpleTokenRegistry.index(of: "a.b.3") == nil)
        #expect(SimpleTokenRegistry.index(of: "a.-3") == nil)
        let start = ContinuousClock.now
        registry.assign("t.1", to: "alice", now: start)
        registry.assign("t.2", to: "bob", now: start)
        #expect(registry.user(of: "t.1", now: start + .seconds(9)) == "alice")
        // Used at 9 s: good until 19 s.
        #expect(registry.user(of: "t.1", now: start + .seconds(18)) == "alice")
        #expect(registry.user(of: "t.2", now: start + .seconds(11)) == nil)
        registry.revokeTokens(of: "alice")
        #expect(registry.user(of: "t.1", now: start + .seconds(19)) == nil)
        registry.assign("t.3", to: "carol", now: start)
        registry.revokeAll()
        #expect(registry.count == 0)
    }

    @Test("bcrypt: a password verifies against its own hash only")
    func hashing() {
        let hasher = PasswordHasher(cost: 4)
        let hash = hasher.hash("secret")
        #expect(hash.hasPrefix("$2"))
        #expect(hasher.verify("secret", hash: hash))
        #expect(!hasher.verify("Secret", hash: hash))
        #expect(PasswordHasher(cost: 99).cost == PasswordHasher.defaultCost)
    }
}
