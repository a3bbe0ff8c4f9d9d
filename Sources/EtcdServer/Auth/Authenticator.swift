import EtcdAPI
import EtcdAuth
import EtcdCommon
import EtcdReplica
import GRPCCore
import Foundation
import NIOPosix

/// Turns a call's credentials into the identity its permissions are checked against (etcd's
/// `AuthInfoFromCtx`), and runs the checks that etcd makes before a request reaches Raft.
///
/// While auth is off nothing is asked (no identity, every check passes), and tokens are ignored,
/// as etcd 3.5 ignores them.
struct Authenticator: Sendable {
    let board: AuthBoard
    let replica: ReplicaHandle
    let status: MemberStatusBoard
    let hasher: PasswordHasher
    /// `--client-cert-auth`: a verified client certificate's CommonName names the user when the
    /// call carries no token.
    let clientCertificateAuth: Bool
    /// How long a token may wait for this member to apply the entry that made it.
    let requestTimeout: Duration
    /// `--auth-token jwt,...`: tokens are signed JWTs instead of simple tokens.
    var jwt: JWTTokens? = nil

    var isEnabled: Bool { board.isEnabled }

    /// The caller's identity, `.none` when auth is off or the call presents nothing. A token
    /// that is not this member's (or expired) is refused with "invalid auth token".
    func identity() async throws -> AuthIdentity {
        guard board.isEnabled else { return .none }
        let credentials = RequestCredentials.current
        if let token = credentials.token, let jwt {
            // A JWT carries the revision it was signed at: any change since makes it stale.
            guard let (username, revision) = jwt.verify(token) else { throw EtcdError.invalidAuthToken }
            return AuthIdentity(username: username, revision: revision)
        }
        if let token = credentials.token {
            guard let index = SimpleTokenRegistry.index(of: token) else { throw EtcdError.invalidAuthToken }
            // The Authenticate entry that made the token may not be applied here yet (it was
            // made through another member): wait for it, as etcd does.
            try await waitUntilApplied(index)
            guard let user = board.tokens.user(of: token) else { throw EtcdError.invalidAuthToken }
            return AuthIdentity(username: user, revision: board.revision)
        }
        if clientCertificateAuth, let name = credentials.commonName {
            return AuthIdentity(username: name, revision: board.revision)
        }
        return .none
    }

    /// A log entry to fill, proposed under the caller's identity (checked at apply).
    func entry() async throws -> Etcdserverpb_InternalRaftRequest {
        var entry = Etcdserverpb_InternalRaftRequest()
        guard board.isEnabled else { return entry }
        let identity = try await identity()
        entry.header.username = identity.username
        entry.header.authRevision = identity.revision
        return entry
    }

    private func waitUntilApplied(_ index: UInt64) async throws {
        let deadline = ContinuousClock.now + requestTimeout
        while status.appliedIndex < index {
            guard ContinuousClock.now < deadline else { throw EtcdError.invalidAuthToken }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// The caller must be an admin (a user with the root role).
    func requireAdmin() async throws {
        guard board.isEnabled else { return }
        let identity = try await identity()
        try replica.read { (replica) throws(ReplicaError) in
            do throws(EtcdError) { try replica.auth.checkAdmin(identity) } catch { throw .request(error) }
        }
    }

    /// The caller must be some known user, as new as the store (etcd 3.5's check for lease and
    /// status calls).
    func requireUser() async throws -> AuthIdentity {
        guard board.isEnabled else { return .none }
        let identity = try await identity()
        try replica.read { (replica) throws(ReplicaError) in
            do throws(EtcdError) { try replica.auth.checkIdentity(identity) } catch { throw .request(error) }
        }
        return identity
    }

    /// etcd's maintenance calls (Defragment, Hash, HashKV, Snapshot) report a refused admin
    /// check with the auth store's own text and code Unknown, not the usual gRPC error.
    func requireAdminForMaintenance() async throws {
        do {
            try await requireAdmin()
        } catch let error as ReplicaError {
            guard case .request(let refusal) = error else { throw error }
            throw Self.unconverted(refusal)
        } catch let error as EtcdError {
            throw Self.unconverted(error)
        }
    }

    static func unconverted(_ error: EtcdError) -> any Error {
        let text: String
        switch error {
        case .userEmpty: text = "auth: user name is empty"
        case .userNotFound: text = "auth: user not found"
        case .permissionDenied: text = "auth: permission denied"
        case .invalidAuthToken: text = "auth: invalid auth token"
        default: return error
        }
        return RPCError(code: .unknown, message: text)
    }

    /// Hashes a password off the event loops (bcrypt takes tens of milliseconds).
    func hash(_ password: String) async throws -> String {
        let hasher = self.hasher
        return try await NIOThreadPool.singleton.runIfActive { hasher.hash(password) }
    }

    func verify(_ password: String, hash: String) async throws -> Bool {
        let hasher = self.hasher
        return try await NIOThreadPool.singleton.runIfActive { hasher.verify(password, hash: hash) }
    }
}
