public import EtcdAPI
public import EtcdCommon
import Foundation

/// Who a request comes from, as its token (or client certificate) said: a user name and the
/// auth revision the identity was established at. A request without one has an empty name and
/// revision 0.
public struct AuthIdentity: Sendable, Hashable {
    public var username: String
    public var revision: UInt64

    public init(username: String, revision: UInt64) {
        self.username = username
        self.revision = revision
    }

    public static let none = AuthIdentity(username: "", revision: 0)
}

/// What a permission check is for.
public enum AccessKind: Sendable {
    case read
    case write
}

/// The cluster's users, roles and key permissions, and whether authentication is on: etcd's auth
/// store. Replicated state: every change comes from an applied log entry, and each operation
/// here is deterministic, so every member holds the same store (the password hashes arrive
/// made, in the entries). Persistence is the caller's (``AuthTable``); a change returns what
/// to save.
///
/// The auth revision counts changes of users, roles and permissions (and disabling auth), as
/// etcd's does: an identity established at an older revision is refused for key access with
/// "revision of auth store is old", so that a revoked permission cannot be used through a
/// token made before.
public struct AuthStore: Sendable {
    public static let rootUser = "root"
    public static let rootRole = "root"

    public private(set) var isEnabled: Bool
    public private(set) var revision: UInt64
    public private(set) var users: [String: Authpb_User]
    public private(set) var roles: [String: Authpb_Role]
    /// Each user's readable and writable keys, from the roles it holds (rebuilt on every change).
    private var readable: [String: PermissionIntervals] = [:]
    private var writable: [String: PermissionIntervals] = [:]

    /// A store as loaded from the backend; a new one has revision 1 (as etcd commits at creation).
    public init(isEnabled: Bool = false, revision: UInt64 = 1, users: [Authpb_User] = [], roles: [Authpb_Role] = []) {
        self.isEnabled = isEnabled
        self.revision = revision
        self.users = Dictionary(users.map { (String(decoding: $0.name, as: UTF8.self), $0) }, uniquingKeysWith: { $1 })
        self.roles = Dictionary(roles.map { (String(decoding: $0.name, as: UTF8.self), $0) }, uniquingKeysWith: { $1 })
        rebuildPermissions()
    }

    // MARK: Checks

    /// etcd's admin check: with auth on, the caller must be a user holding the `root` role.
    public func checkAdmin(_ identity: AuthIdentity) throws(EtcdError) {
        guard isEnabled else { return }
        guard !identity.username.isEmpty else { throw .userEmpty }
        guard let user = users[identity.username] else { throw .userNotFound }
        guard user.roles.contains(Self.rootRole) else { throw .permissionDenied }
    }

    /// etcd's key check: with auth on, the caller must be known, its identity as new as the
    /// store, and its roles must grant `kind` on every key of the request's range (`rangeEnd`
    /// empty for one key, one zero byte for every key from `key` on). Admins may do anything.
    public func checkKeys(_ identity: AuthIdentity, _ kind: AccessKind, key: [UInt8], rangeEnd: [UInt8]) throws(EtcdError) {
        guard isEnabled else { return }
        try checkIdentity(identity)
        if isAdmin(identity.username) { return }
        let allowed = kind == .read ? readable[identity.username] : writable[identity.username]
        guard let allowed, allowed.covers(key: key, rangeEnd: rangeEnd) else { throw .permissionDenied }
    }

    /// The first half of ``checkKeys``: a known user with an identity as new as the store.
    public func checkIdentity(_ identity: AuthIdentity) throws(EtcdError) {
        guard isEnabled else { return }
        guard identity.revision != 0 else { throw .userEmpty }
        guard identity.revision >= revision else { throw .authOldRevision }
        guard users[identity.username] != nil else { throw .permissionDenied }
    }

    public func isAdmin(_ username: String) -> Bool {
        users[username]?.roles.contains(Self.rootRole) ?? false
    }

    /// UserGet's rule: admins may look at anyone, others at themselves.
    public func checkUserGet(_ identity: AuthIdentity, name: String) throws(EtcdError) {
        guard isEnabled, identity.username != name else { return }
        try checkAdmin(identity)
    }

    /// RoleGet's rule: admins may look at any role, others at the roles they hold.
    public func checkRoleGet(_ identity: AuthIdentity, name: String) throws(EtcdError) {
        guard isEnabled else { return }
        if let user = users[identity.username], user.roles.contains(name) { return }
        try checkAdmin(identity)
    }

    /// The user `name` may log in with a password: the user exists and was not created without
    /// one. Returns its password hash.
    public func passwordHash(of name: String) throws(EtcdError) -> String {
        guard isEnabled else { throw .authNotEnabled }
        guard let user = users[name] else { throw .authFailed }
        guard !user.options.noPassword else { throw .noPasswordUser }
        return String(decoding: user.password, as: UTF8.self)
    }

    // MARK: Changes

    /// What a change leaves to save and to do.
    public struct Change: Sendable, Equatable {
        public var savedUsers: [Authpb_User] = []
        public var deletedUsers: [String] = []
        public var savedRoles: [Authpb_Role] = []
        public var deletedRoles: [String] = []
        /// The enabled flag or the revision changed.
        public var metaChanged = false
        /// Users whose simple tokens must go (deleted, or their password changed).
        public var revokedTokensOf: [String] = []
        /// Every simple token must go (auth was disabled).
        public var revokesAllTokens = false

        public init() {}
    }

    public mutating func enable() throws(EtcdError) -> Change {
        var change = Change()
        guard !isEnabled else { return change }
        guard let root = users[Self.rootUser] else { throw .rootUserNotExist }
        guard root.roles.contains(Self.rootRole) else { throw .rootRoleNotExist }
        isEnabled = true
        change.metaChanged = true
        return change
    }

    public mutating func disable() -> Change {
        var change = Change()
        guard isEnabled else { return change }
        isEnabled = false
        revision += 1
        change.metaChanged = true
        change.revokesAllTokens = true
        return change
    }

    /// Adds a user; `passwordHash` is nil for a user without a password.
    public mutating func addUser(_ name: String, passwordHash: String?, noPassword: Bool) throws(EtcdError) -> Change {
        guard !name.isEmpty else { throw .userEmpty }
        guard users[name] == nil else { throw .userAlreadyExists }
        var user = Authpb_User()
        user.name = Data(name.utf8)
        if !noPassword, let passwordHash { user.password = Data(passwordHash.utf8) }
        user.options.noPassword = noPassword
        users[name] = user
        return bumped(savingUser: user)
    }

    public mutating func deleteUser(_ name: String) throws(EtcdError) -> Change {
        if isEnabled && name == Self.rootUser { throw .invalidAuthManagement }
        guard users.removeValue(forKey: name) != nil else { throw .userNotFound }
        var change = bumped()
        change.deletedUsers = [name]
        change.revokedTokensOf = [name]
        return change
    }

    public mutating func changePassword(of name: String, passwordHash: String) throws(EtcdError) -> Change {
        guard var user = users[name] else { throw .userNotFound }
        // A user made without a password stays one (etcd 3.5 keeps no hash for it).
        if !user.options.noPassword { user.password = Data(passwordHash.utf8) }
        users[name] = user
        var change = bumped(savingUser: user)
        change.revokedTokensOf = [name]
        return change
    }

    public mutating func grantRole(_ role: String, to name: String) throws(EtcdError) -> Change {
        guard var user = users[name] else { throw .userNotFound }
        // `root` may be granted before a role of that name exists, as etcd allows.
        guard role == Self.rootRole || roles[role] != nil else { throw .roleNotFound }
        guard !user.roles.contains(role) else { return Change() }
        let position = user.roles.firstIndex { role < $0 } ?? user.roles.endIndex
        user.roles.insert(role, at: position)
        users[name] = user
        return bumped(savingUser: user)
    }

    public mutating func revokeRole(_ role: String, from name: String) throws(EtcdError) -> Change {
        if isEnabled && name == Self.rootUser && role == Self.rootRole { throw .invalidAuthManagement }
        guard var user = users[name] else { throw .userNotFound }
        guard let position = user.roles.firstIndex(of: role) else { throw .roleNotGranted }
        user.roles.remove(at: position)
        users[name] = user
        return bumped(savingUser: user)
    }

    public mutating func addRole(_ name: String) throws(EtcdError) -> Change {
        guard !name.isEmpty else { throw .roleEmpty }
        guard roles[name] == nil else { throw .roleAlreadyExists }
        var role = Authpb_Role()
        role.name = Data(name.utf8)
        roles[name] = role
        var change = bumped()
        change.savedRoles = [role]
        return change
    }

    /// Deletes a role and takes it from every user that held it.
    public mutating func deleteRole(_ name: String) throws(EtcdError) -> Change {
        if isEnabled && name == Self.rootRole { throw .invalidAuthManagement }
        guard roles.removeValue(forKey: name) != nil else { throw .roleNotFound }
        var change = Change()
        change.deletedRoles = [name]
        for (userName, var user) in users.sorted(by: { $0.key < $1.key }) {
            guard let position = user.roles.firstIndex(of: name) else { continue }
            user.roles.remove(at: position)
            users[userName] = user
            change.savedUsers.append(user)
        }
        revision += 1
        change.metaChanged = true
        rebuildPermissions()
        return change
    }

    /// Grants a permission: one with the same key and range end has its type replaced, otherwise
    /// it is added, in key order. The range must be a key, a range `key < rangeEnd`, or
    /// open-ended (etcd 3.5's check).
    public mutating func grantPermission(_ permission: Authpb_Permission, to name: String) throws(EtcdError) -> Change {
        let key = Array(permission.key)
        let rangeEnd = Array(permission.rangeEnd)
        guard !key.isEmpty, rangeEnd.isEmpty || rangeEnd == [0] || key.lexicographicallyPrecedes(rangeEnd) else {
            throw .invalidAuthManagement
        }
        guard var role = roles[name] else { throw .roleNotFound }
        if let index = role.keyPermission.firstIndex(where: { Array($0.key) == key && Array($0.rangeEnd) == rangeEnd }) {
            role.keyPermission[index].permType = permission.permType
        } else {
            let position =
                role.keyPermission.firstIndex { key.lexicographicallyPrecedes(Array($0.key)) } ?? role.keyPermission.endIndex
            role.keyPermission.insert(permission, at: position)
        }
        roles[name] = role
        var change = bumped()
        change.savedRoles = [role]
        return change
    }

    public mutating func revokePermission(key: [UInt8], rangeEnd: [UInt8], from name: String) throws(EtcdError) -> Change {
        guard var role = roles[name] else { throw .roleNotFound }
        let before = role.keyPermission.count
        role.keyPermission.removeAll { Array($0.key) == key && Array($0.rangeEnd) == rangeEnd }
        guard role.keyPermission.count < before else { throw .permissionNotGranted }
        roles[name] = role
        var change = bumped()
        change.savedRoles = [role]
        return change
    }

    /// Names in byte order, as etcd lists them.
    public var userNames: [String] { users.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) } }
    public var roleNames: [String] { roles.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) } }

    private mutating func bumped(savingUser user: Authpb_User? = nil) -> Change {
        revision += 1
        rebuildPermissions()
        var change = Change()
        change.metaChanged = true
        if let user { change.savedUsers = [user] }
        return change
    }

    private mutating func rebuildPermissions() {
        readable = [:]
        writable = [:]
        for (name, user) in users {
            var read = PermissionIntervals()
            var write = PermissionIntervals()
            for roleName in user.roles {
                guard let role = roles[roleName] else { continue }
                for permission in role.keyPermission {
                    switch permission.permType {
                    case .read:
                        read.add(key: Array(permission.key), rangeEnd: Array(permission.rangeEnd))
                    case .write:
                        write.add(key: Array(permission.key), rangeEnd: Array(permission.rangeEnd))
                    case .readwrite:
                        read.add(key: Array(permission.key), rangeEnd: Array(permission.rangeEnd))
                        write.add(key: Array(permission.key), rangeEnd: Array(permission.rangeEnd))
                    case .UNRECOGNIZED:
                        break
                    }
                }
            }
            readable[name] = read
            writable[name] = write
        }
    }
}
