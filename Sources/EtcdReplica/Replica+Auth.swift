public import EtcdAPI
public import EtcdAuth
import EtcdCommon
import EtcdLease
import EtcdMVCC
public import Foundation
public import SwiftProtobuf

// MARK: Auth entries

extension Replica {
    /// The identity a log entry was proposed under (etcd's request header).
    private static func identity(of request: Etcdserverpb_InternalRaftRequest) -> AuthIdentity {
        AuthIdentity(username: request.header.username, revision: request.header.authRevision)
    }

    /// Applies an auth request (etcd's `applierV3` auth methods behind its admin checks); nil if
    /// the entry holds none.
    func applyAuth(_ request: Etcdserverpb_InternalRaftRequest, index: UInt64) throws(ReplicaError) -> (any SwiftProtobuf.Message)? {
        let identity = Self.identity(of: request)
        if let operation = Self.adminOperation(of: request) {
            // Enabling auth that is on already is the one admin request that is not refused
            // when auth is off: it needs no identity then.
            if !(request.hasAuthEnable && !auth.isEnabled) {
                do throws(EtcdError) { try auth.checkAdmin(identity) } catch { throw .request(error) }
            }
            return try operation(self)
        }
        do throws(EtcdError) {
            if request.hasAuthenticate { return try authenticate(request.authenticate, index: index) }
            if request.hasAuthUserGet {
                try auth.checkUserGet(identity, name: request.authUserGet.name)
                guard let user = auth.users[request.authUserGet.name] else { throw .userNotFound }
                var response = Etcdserverpb_AuthUserGetResponse()
                response.roles = user.roles
                return withHeader(response)
            }
            if request.hasAuthRoleGet {
                try auth.checkRoleGet(identity, name: request.authRoleGet.role)
                guard let role = auth.roles[request.authRoleGet.role] else { throw .roleNotFound }
                var response = Etcdserverpb_AuthRoleGetResponse()
                response.perm = role.keyPermission
                return withHeader(response)
            }
            return nil
        } catch {
            throw .request(error)
        }
    }

    private typealias Operation = (Replica) throws(ReplicaError) -> any SwiftProtobuf.Message

    /// An operation that changes the store with `body` and answers `response`.
    private static func changing<Response: AuthResponseWithHeader>(
        _ response: Response, _ body: @escaping (inout AuthStore) throws(EtcdError) -> AuthStore.Change
    ) -> Operation {
        { (replica) throws(ReplicaError) in
            try replica.changeAuth(body)
            return replica.withHeader(response)
        }
    }

    /// An operation that reads the store to fill `response`.
    private static func reading<Response: AuthResponseWithHeader>(
        _ response: Response, _ fill: @escaping (AuthStore, inout Response) -> Void
    ) -> Operation {
        { replica in
            var response = response
            fill(replica.auth, &response)
            return replica.withHeader(response)
        }
    }

    /// The auth requests only admins may make, as functions applying each.
    private static func adminOperation(of request: Etcdserverpb_InternalRaftRequest) -> Operation? {
        if request.hasAuthEnable { return changing(Etcdserverpb_AuthEnableResponse()) { (auth) throws(EtcdError) in try auth.enable() } }
        if request.hasAuthDisable { return changing(Etcdserverpb_AuthDisableResponse()) { auth in auth.disable() } }
        if request.hasAuthStatus {
            return reading(Etcdserverpb_AuthStatusResponse()) { auth, response in
                response.enabled = auth.isEnabled
                response.authRevision = auth.revision
            }
        }
        if request.hasAuthUserList { return reading(Etcdserverpb_AuthUserListResponse()) { auth, response in response.users = auth.userNames } }
        if request.hasAuthRoleList { return reading(Etcdserverpb_AuthRoleListResponse()) { auth, response in response.roles = auth.roleNames } }
        if request.hasAuthUserAdd {
            let add = request.authUserAdd
            return { (replica) throws(ReplicaError) in
                let noPassword = add.options.noPassword
                let hash = noPassword ? nil : try passwordHash(hashed: add.hashedPassword, plain: add.password)
                return try changing(Etcdserverpb_AuthUserAddResponse()) { (auth) throws(EtcdError) in
                    try auth.addUser(add.name, passwordHash: hash, noPassword: noPassword)
                }(replica)
            }
        }
        if request.hasAuthUserChangePassword {
            let change = request.authUserChangePassword
            return { (replica) throws(ReplicaError) in
                let hash = try passwordHash(hashed: change.hashedPassword, plain: change.password)
                return try changing(Etcdserverpb_AuthUserChangePasswordResponse()) { (auth) throws(EtcdError) in
                    try auth.changePassword(of: change.name, passwordHash: hash)
                }(replica)
            }
        }
        if request.hasAuthUserDelete {
            let name = request.authUserDelete.name
            return changing(Etcdserverpb_AuthUserDeleteResponse()) { (auth) throws(EtcdError) in try auth.deleteUser(name) }
        }
        if request.hasAuthUserGrantRole {
            let grant = request.authUserGrantRole
            return changing(Etcdserverpb_AuthUserGrantRoleResponse()) { (auth) throws(EtcdError) in
                try auth.grantRole(grant.role, to: grant.user)
            }
        }
        if request.hasAuthUserRevokeRole {
            let revoke = request.authUserRevokeRole
            return changing(Etcdserverpb_AuthUserRevokeRoleResponse()) { (auth) throws(EtcdError) in
                try auth.revokeRole(revoke.role, from: revoke.name)
            }
        }
        if request.hasAuthRoleAdd {
            let name = request.authRoleAdd.name
            return changing(Etcdserverpb_AuthRoleAddResponse()) { (auth) throws(EtcdError) in try auth.addRole(name) }
        }
        if request.hasAuthRoleDelete {
            let name = request.authRoleDelete.role
            return changing(Etcdserverpb_AuthRoleDeleteResponse()) { (auth) throws(EtcdError) in try auth.deleteRole(name) }
        }
        if request.hasAuthRoleGrantPermission {
            let grant = request.authRoleGrantPermission
            return changing(Etcdserverpb_AuthRoleGrantPermissionResponse()) { (auth) throws(EtcdError) in
                guard grant.hasPerm else { throw .permissionNotGiven }
                return try auth.grantPermission(grant.perm, to: grant.name)
            }
        }
        if request.hasAuthRoleRevokePermission {
            let revoke = request.authRoleRevokePermission
            return changing(Etcdserverpb_AuthRoleRevokePermissionResponse()) { (auth) throws(EtcdError) in
                try auth.revokePermission(key: Array(revoke.key), rangeEnd: Array(revoke.rangeEnd), from: revoke.role)
            }
        }
        return nil
    }

    /// The hash a user add or password change carries (etcd 3.5 hashes before proposing and
    /// sends it base64-encoded); an entry with only a plain password is hashed here.
    private static func passwordHash(hashed: String, plain: String) throws(ReplicaError) -> String {
        guard !hashed.isEmpty else { return PasswordHasher().hash(plain) }
        guard let decoded = Data(base64Encoded: hashed) else { throw .request(.invalidAuthManagement) }
        return String(decoding: decoded, as: UTF8.self)
    }

    /// Assigns the simple token the entry names (`<prefix>.<index>`) to its user, on this member.
    private func authenticate(_ request: Etcdserverpb_InternalAuthenticateRequest, index: UInt64) throws(EtcdError)
        -> Etcdserverpb_AuthenticateResponse
    {
        guard auth.isEnabled else { throw .authNotEnabled }
        guard let user = auth.users[request.name], !user.options.noPassword else { throw .authFailed }
        var response = Etcdserverpb_AuthenticateResponse()
        if !request.simpleToken.isEmpty {
            response.token = "\(request.simpleToken).\(index)"
            authBoard.tokens.assign(response.token, to: request.name)
        }
        return withHeader(response)
    }

    /// Makes a change to the auth store, saves it in the open batch, and drops the simple tokens
    /// it revokes.
    private func changeAuth(_ body: (inout AuthStore) throws(EtcdError) -> AuthStore.Change) throws(ReplicaError) {
        var changed = auth
        let change: AuthStore.Change
        do throws(EtcdError) {
            change = try body(&changed)
        } catch {
            throw .request(error)
        }
        do {
            try authTable.save(change, of: changed)
        } catch {
            throw .storage("saving the auth store: \(error)")
        }
        auth = changed
        authBoard.publish(changed)
        if change.revokesAllTokens { authBoard.tokens.revokeAll() }
        for user in change.revokedTokensOf { authBoard.tokens.revokeTokens(of: user) }
    }

    private func withHeader<Response: AuthResponseWithHeader>(_ response: Response) -> Response {
        var response = response
        response.header.revision = store.currentRevision
        return response
    }
}

/// Auth responses, whose header carries the store's revision at apply (as etcd's do).
public protocol AuthResponseWithHeader: SwiftProtobuf.Message {
    var header: Etcdserverpb_ResponseHeader { get set }
}

extension Etcdserverpb_AuthEnableResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthDisableResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthStatusResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthenticateResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserAddResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserGetResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserListResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserDeleteResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserChangePasswordResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserGrantRoleResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthUserRevokeRoleResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleAddResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleGetResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleListResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleDeleteResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleGrantPermissionResponse: AuthResponseWithHeader {}
extension Etcdserverpb_AuthRoleRevokePermissionResponse: AuthResponseWithHeader {}

// MARK: Key permissions of writes

extension Replica {
    /// etcd's `authApplierV3` checks of a write, at apply (so every member decides alike): write
    /// permission on every key it changes, read permission where it returns previous values or
    /// compares, and write permission on the keys of a lease it revokes or attaches to.
    func checkWritePermissions(_ request: Etcdserverpb_InternalRaftRequest) throws(ReplicaError) {
        guard auth.isEnabled else { return }
        let identity = Self.identity(of: request)
        do throws(EtcdError) {
            if request.hasPut { try checkPut(request.put, identity) }
            if request.hasDeleteRange { try checkDelete(request.deleteRange, identity) }
            if request.hasTxn { try checkTxn(request.txn, identity) }
            if request.hasLeaseRevoke {
                for key in lessor.attachedKeys(LeaseID(request.leaseRevoke.id)) ?? [] {
                    try auth.checkKeys(identity, .write, key: key, rangeEnd: [])
                }
            }
        } catch {
            throw .request(error)
        }
    }

    private func checkPut(_ put: Etcdserverpb_PutRequest, _ identity: AuthIdentity) throws(EtcdError) {
        let key = Array(put.key)
        try auth.checkKeys(identity, .write, key: key, rangeEnd: [])
        if put.prevKv { try auth.checkKeys(identity, .read, key: key, rangeEnd: []) }
        if put.lease != 0 {
            for attached in lessor.attachedKeys(LeaseID(put.lease)) ?? [] {
                try auth.checkKeys(identity, .write, key: attached, rangeEnd: [])
            }
        }
    }

    private func checkDelete(_ delete: Etcdserverpb_DeleteRangeRequest, _ identity: AuthIdentity) throws(EtcdError) {
        try auth.checkKeys(identity, .write, key: Array(delete.key), rangeEnd: Array(delete.rangeEnd))
        if delete.prevKv { try auth.checkKeys(identity, .read, key: Array(delete.key), rangeEnd: Array(delete.rangeEnd)) }
    }

    /// Every compare and every operation of both branches, nested transactions included
    /// (etcd 3.5's check), whichever branch runs.
    func checkTxn(_ txn: Etcdserverpb_TxnRequest, _ identity: AuthIdentity) throws(EtcdError) {
        for compare in txn.compare {
            try auth.checkKeys(identity, .read, key: Array(compare.key), rangeEnd: Array(compare.rangeEnd))
        }
        for operation in txn.success + txn.failure {
            switch operation.request {
            case .requestRange(let range):
                try auth.checkKeys(identity, .read, key: Array(range.key), rangeEnd: Array(range.rangeEnd))
            case .requestPut(let put): try checkPut(put, identity)
            case .requestDeleteRange(let delete): try checkDelete(delete, identity)
            case .requestTxn(let nested): try checkTxn(nested, identity)
            case nil: break
            }
        }
    }
}

// MARK: Key permissions of reads

extension Replica {
    /// A read of `[key, rangeEnd)` needs read permission on all of it (checked in the API
    /// layer, as etcd does, since reads make no log entry).
    public func checkRead(_ identity: AuthIdentity, key: Data, rangeEnd: Data) throws(ReplicaError) {
        guard auth.isEnabled else { return }
        do throws(EtcdError) {
            try auth.checkKeys(identity, .read, key: Array(key), rangeEnd: Array(rangeEnd))
        } catch {
            throw .request(error)
        }
    }

    /// A transaction's compares and operations, as at apply (for a read-only one, served here).
    public func checkTxnPermissions(_ identity: AuthIdentity, _ txn: Etcdserverpb_TxnRequest) throws(ReplicaError) {
        guard auth.isEnabled else { return }
        do throws(EtcdError) { try checkTxn(txn, identity) } catch { throw .request(error) }
    }
}

extension Replica {
    /// Permission of `kind` on every key attached to the lease (none needed for a lease with no
    /// keys or no such lease; admins need none).
    public func checkLeaseKeys(_ identity: AuthIdentity, lease: Int64, _ kind: AccessKind) throws(ReplicaError) {
        guard auth.isEnabled else { return }
        do throws(EtcdError) {
            for key in lessor.attachedKeys(LeaseID(lease)) ?? [] {
                try auth.checkKeys(identity, kind, key: key, rangeEnd: [])
            }
        } catch {
            throw .request(error)
        }
    }
}
