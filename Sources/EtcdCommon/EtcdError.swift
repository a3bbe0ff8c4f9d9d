public import GRPCCore

/// Every error a client can see from the v3 API, with the gRPC status code and the exact text that
/// etcd 3.5 sends for it.
///
/// The server maps each layer's typed error to one of these cases in one place, so the code and
/// message a client receives never drift from etcd's (clients such as clientv3 compare the message
/// text to recognise errors). The client maps a received status back with ``init(code:message:)``.
public enum EtcdError: Error, Hashable, Sendable, CaseIterable {
    // Request validation.
    case emptyKey
    case keyNotFound
    case valueProvided
    case leaseProvided
    case tooManyOperations
    case duplicateKey
    case requestTooLarge
    case tooManyRequests
    case invalidSortOption

    // MVCC.
    case compacted
    case futureRevision
    case noSpace

    // Leases.
    case leaseNotFound
    case leaseExists
    case leaseTTLTooLarge

    // Watch.
    case watchCanceled

    // Membership.
    case memberExists
    case peerURLExists
    case memberNotEnoughStarted
    case memberBadURLs
    case memberNotFound
    case memberNotLearner
    case learnerNotReady
    case tooManyLearners

    // Authentication.
    case rootUserNotExist
    case rootRoleNotExist
    case userAlreadyExists
    case userEmpty
    case userNotFound
    case roleAlreadyExists
    case roleNotFound
    case roleEmpty
    case authFailed
    case permissionDenied
    case roleNotGranted
    case permissionNotGranted
    case authNotEnabled
    case invalidAuthToken
    case invalidAuthManagement
    case authOldRevision
    case permissionNotGiven
    /// Not in etcd's gRPC table: clients get the auth store's own text with code Unknown.
    case noPasswordUser

    // Cluster state.
    case noLeader
    case notLeader
    case leaderChanged
    case notCapable
    case stopped
    case timeout
    case timeoutDueToLeaderFail
    case timeoutDueToConnectionLost
    case timeoutWaitAppliedIndex
    case timeoutLeaderTransfer
    case unhealthy
    case corrupt
    case badLeaderTransferee

    /// The gRPC status code etcd uses for this error.
    public var code: RPCError.Code {
        switch self {
        case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .tooManyOperations, .duplicateKey,
            .requestTooLarge, .memberBadURLs, .userEmpty, .roleEmpty, .authFailed, .invalidAuthManagement,
            .authOldRevision, .invalidSortOption, .permissionNotGiven:
            return .invalidArgument
        case .compacted, .futureRevision, .leaseTTLTooLarge:
            return .outOfRange
        case .noSpace, .tooManyRequests:
            return .resourceExhausted
        case .leaseNotFound, .memberNotFound:
            return .notFound
        case .leaseExists, .memberExists, .peerURLExists, .memberNotEnoughStarted, .memberNotLearner,
            .learnerNotReady, .tooManyLearners, .rootUserNotExist, .rootRoleNotExist, .userAlreadyExists,
            .userNotFound, .roleAlreadyExists, .roleNotFound, .roleNotGranted, .permissionNotGranted,
            .authNotEnabled, .notLeader, .badLeaderTransferee:
            return .failedPrecondition
        case .watchCanceled:
            return .cancelled
        case .permissionDenied:
            return .permissionDenied
        case .invalidAuthToken:
            return .unauthenticated
        case .noLeader, .leaderChanged, .notCapable, .stopped, .timeout, .timeoutDueToLeaderFail,
            .timeoutDueToConnectionLost, .timeoutWaitAppliedIndex, .timeoutLeaderTransfer, .unhealthy:
            return .unavailable
        case .corrupt:
            return .dataLoss
        case .noPasswordUser:
            return .unknown
        }
    }

    /// The status message, word for word as etcd sends it.
    public var message: String {
        switch self {
        case .emptyKey: return "etcdserver: key is not provided"
        case .keyNotFound: return "etcdserver: key not found"
        case .valueProvided: return "etcdserver: value is provided"
        case .leaseProvided: return "etcdserver: lease is provided"
        case .tooManyOperations: return "etcdserver: too many operations in txn request"
        case .duplicateKey: return "etcdserver: duplicate key given in txn request"
        case .requestTooLarge: return "etcdserver: request is too large"
        case .tooManyRequests: return "etcdserver: too many requests"
        case .invalidSortOption: return "etcdserver: invalid sort option"
        case .compacted: return "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: return "etcdserver: mvcc: required revision is a future revision"
        case .noSpace: return "etcdserver: mvcc: database space exceeded"
        case .leaseNotFound: return "etcdserver: requested lease not found"
        case .leaseExists: return "etcdserver: lease already exists"
        case .leaseTTLTooLarge: return "etcdserver: too large lease TTL"
        case .watchCanceled: return "etcdserver: watch canceled"
        case .memberExists: return "etcdserver: member ID already exist"
        case .peerURLExists: return "etcdserver: Peer URLs already exists"
        case .memberNotEnoughStarted:
            return "etcdserver: re-configuration failed due to not enough started members"
        case .memberBadURLs: return "etcdserver: given member URLs are invalid"
        case .memberNotFound: return "etcdserver: member not found"
        case .memberNotLearner: return "etcdserver: can only promote a learner member"
        case .learnerNotReady: return "etcdserver: can only promote a learner member which is in sync with leader"
        case .tooManyLearners: return "etcdserver: too many learner members in cluster"
        case .rootUserNotExist: return "etcdserver: root user does not exist"
        case .rootRoleNotExist: return "etcdserver: root user does not have root role"
        case .userAlreadyExists: return "etcdserver: user name already exists"
        case .userEmpty: return "etcdserver: user name is empty"
        case .userNotFound: return "etcdserver: user name not found"
        case .roleAlreadyExists: return "etcdserver: role name already exists"
        case .roleNotFound: return "etcdserver: role name not found"
        case .roleEmpty: return "etcdserver: role name is empty"
        case .authFailed: return "etcdserver: authentication failed, invalid user ID or password"
        case .permissionDenied: return "etcdserver: permission denied"
        case .roleNotGranted: return "etcdserver: role is not granted to the user"
        case .permissionNotGranted: return "etcdserver: permission is not granted to the role"
        case .authNotEnabled: return "etcdserver: authentication is not enabled"
        case .invalidAuthToken: return "etcdserver: invalid auth token"
        case .invalidAuthManagement: return "etcdserver: invalid auth management"
        case .authOldRevision: return "etcdserver: revision of auth store is old"
        case .permissionNotGiven: return "etcdserver: permission not given"
        case .noPasswordUser: return "auth: authentication failed, password was given for no password user"
        case .noLeader: return "etcdserver: no leader"
        case .notLeader: return "etcdserver: not leader"
        case .leaderChanged: return "etcdserver: leader changed"
        case .notCapable: return "etcdserver: not capable"
        case .stopped: return "etcdserver: server stopped"
        case .timeout: return "etcdserver: request timed out"
        case .timeoutDueToLeaderFail:
            return "etcdserver: request timed out, possibly due to previous leader failure"
        case .timeoutDueToConnectionLost:
            return "etcdserver: request timed out, possibly due to connection lost"
        case .timeoutWaitAppliedIndex:
            return "etcdserver: request timed out, waiting for the applied index took too long"
        case .timeoutLeaderTransfer: return "etcdserver: request timed out, leader transfer took too long"
        case .unhealthy: return "etcdserver: unhealthy cluster"
        case .corrupt: return "etcdserver: corrupt cluster"
        case .badLeaderTransferee: return "etcdserver: bad leader transferee"
        }
    }

    /// Recognises an error received from a server by its code and message, as clientv3 does.
    public init?(code: RPCError.Code, message: String) {
        guard let match = EtcdError.byMessage[message], match.code == code else { return nil }
        self = match
    }

    private static let byMessage: [String: EtcdError] = Dictionary(
        uniqueKeysWithValues: EtcdError.allCases.map { ($0.message, $0) }
    )
}

extension EtcdError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code { code }
    public var rpcErrorMessage: String { message }
}

extension EtcdError: CustomStringConvertible {
    public var description: String { message }
}
