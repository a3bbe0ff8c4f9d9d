import EtcdCommon
public import EtcdReplica
public import GRPCCore

/// The one place where the replica's failures become what a client sees: request errors carry
/// etcd's own code and text; a storage failure is an internal error (the member stops, as etcd
/// would, and a restart replays the WAL).
extension ReplicaError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        switch self {
        case .request(let error): return error.code
        case .storage: return .internalError
        }
    }

    public var rpcErrorMessage: String {
        switch self {
        case .request(let error): return error.message
        case .storage(let reason): return "etcdserver: storage failure: \(reason)"
        }
    }
}
