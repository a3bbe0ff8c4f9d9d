import EtcdAPI
import EtcdAuth
import EtcdCommon
import EtcdReplica
import Foundation
import GRPCCore
import SwiftProtobuf

/// etcd's Auth service: every request goes through Raft under the caller's identity and is
/// checked at apply (admin requests by everyone's rule, UserGet and RoleGet by their own), so
/// every member decides alike. Passwords are hashed here, before proposing, as etcd 3.5 does:
/// the log carries hashes, never passwords.
struct AuthService: Etcdserverpb_Auth.SimpleServiceProtocol {
    let proposer: RequestProposer
    let replica: ReplicaHandle
    let header: ResponseHeaderSource
    let authenticator: Authenticator

    /// How many times Authenticate checks the password again when the auth store changed while
    /// its token was being made (a password change in between must not be missed).
    static let maxAuthenticateAttempts = 5

    func authEnable(request: Etcdserverpb_AuthEnableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthEnableResponse
    {
        try await propose { $0.authEnable = request }
    }

    func authDisable(request: Etcdserverpb_AuthDisableRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthDisableResponse
    {
        try await propose { $0.authDisable = request }
    }

    func authStatus(request: Etcdserverpb_AuthStatusRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthStatusResponse
    {
        try await propose { $0.authStatus = request }
    }

    func authenticate(request: Etcdserverpb_AuthenticateRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthenticateResponse
    {
        try await proposer.waitForLinearizableRead()
        for _ in 0..<Self.maxAuthenticateAttempts {
            let (hash, revision) = try replica.read { (replica) throws(ReplicaError) -> (String, UInt64) in
                do throws(EtcdError) {
                    return (try replica.auth.passwordHash(of: request.name), replica.auth.revision)
                } catch {
                    throw .request(error)
                }
            }
            guard try await authenticator.verify(request.password, hash: hash) else { throw EtcdError.authFailed }
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.authenticate.name = request.name
            // A JWT is signed here once the entry is applied; a simple token is assigned there.
            if authenticator.jwt == nil { entry.authenticate.simpleToken = SimpleTokenRegistry.randomPrefix() }
            var response: Etcdserverpb_AuthenticateResponse = try await proposeEntry(entry)
            // The password checked above is still the user's only if nothing changed since.
            guard try replica.read({ $0.auth.revision }) == revision else { continue }
            if let jwt = authenticator.jwt {
                do {
                    response.token = try jwt.sign(username: request.name, revision: revision)
                } catch {
                    // etcd's token provider errors reach clients unconverted.
                    throw RPCError(code: .unknown, message: "\(error)")
                }
            }
            return response
        }
        throw EtcdError.authFailed
    }

    func userAdd(request: Etcdserverpb_AuthUserAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserAddResponse
    {
        var add = request
        if !add.options.noPassword { add.hashedPassword = try await hashForTheLog(add.password) }
        add.password = ""
        return try await propose { $0.authUserAdd = add }
    }

    func userGet(request: Etcdserverpb_AuthUserGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGetResponse
    {
        try await propose { $0.authUserGet = request }
    }

    func userList(request: Etcdserverpb_AuthUserListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserListResponse
    {
        try await propose { $0.authUserList = request }
    }

    func userDelete(request: Etcdserverpb_AuthUserDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserDeleteResponse
    {
        try await propose { $0.authUserDelete = request }
    }

    func userChangePassword(request: Etcdserverpb_AuthUserChangePasswordRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserChangePasswordResponse
    {
        var change = request
        change.hashedPassword = try await hashForTheLog(change.password)
        change.password = ""
        return try await propose { $0.authUserChangePassword = change }
    }

    func userGrantRole(request: Etcdserverpb_AuthUserGrantRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserGrantRoleResponse
    {
        try await propose { $0.authUserGrantRole = request }
    }

    func userRevokeRole(request: Etcdserverpb_AuthUserRevokeRoleRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthUserRevokeRoleResponse
    {
        try await propose { $0.authUserRevokeRole = request }
    }

    func roleAdd(request: Etcdserverpb_AuthRoleAddRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleAddResponse
    {
        try await propose { $0.authRoleAdd = request }
    }

    func roleGet(request: Etcdserverpb_AuthRoleGetRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleGetResponse
    {
        try await propose { $0.authRoleGet = request }
    }

    func roleList(request: Etcdserverpb_AuthRoleListRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleListResponse
    {
        try await propose { $0.authRoleList = request }
    }

    func roleDelete(request: Etcdserverpb_AuthRoleDeleteRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleDeleteResponse
    {
        try await propose { $0.authRoleDelete = request }
    }

    func roleGrantPermission(request: Etcdserverpb_AuthRoleGrantPermissionRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleGrantPermissionResponse
    {
        try await propose { $0.authRoleGrantPermission = request }
    }

    func roleRevokePermission(request: Etcdserverpb_AuthRoleRevokePermissionRequest, context: ServerContext) async throws
        -> Etcdserverpb_AuthRoleRevokePermissionResponse
    {
        try await propose { $0.authRoleRevokePermission = request }
    }

    /// A password's bcrypt hash as the log carries it (base64, as etcd 3.5). bcrypt costs tens
    /// of milliseconds: only for a caller that may add users and change passwords.
    private func hashForTheLog(_ password: String) async throws -> String {
        try await authenticator.requireAdmin()
        return Data(try await authenticator.hash(password).utf8).base64EncodedString()
    }

    /// Proposes the request `fill` sets under the caller's identity and returns its response.
    private func propose<Response: AuthResponseWithHeader>(
        _ fill: (inout Etcdserverpb_InternalRaftRequest) -> Void
    ) async throws -> Response {
        let identity = try await authenticator.identity()
        var entry = Etcdserverpb_InternalRaftRequest()
        entry.header.username = identity.username
        entry.header.authRevision = identity.revision
        fill(&entry)
        return try await proposeEntry(entry)
    }

    private func proposeEntry<Response: AuthResponseWithHeader>(_ entry: Etcdserverpb_InternalRaftRequest) async throws -> Response {
        guard case .auth(let message) = try await proposer.propose(entry), var response = message as? Response else {
            throw RPCError(code: .internalError, message: "etcdserver: an auth request was answered with another response")
        }
        header.fill(&response.header)
        return response
    }
}
