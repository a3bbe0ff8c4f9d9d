import EtcdCommon
import GRPCCore

/// etcd's "hasleader" metadata (clientv3's `WithRequireLeader`, which etcdctl watch uses): a call
/// that asks for it on a member that knows no leader fails at once with "etcdserver: no leader"
/// rather than waiting on a member cut off from its cluster.
struct RequireLeaderInterceptor: ServerInterceptor {
    let status: MemberStatusBoard

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if status.leader == 0, request.metadata[stringValues: "hasleader"].contains(where: { $0 == "true" }) {
            return StreamingServerResponse(error: RPCError(code: .unavailable, message: EtcdError.noLeader.message))
        }
        return try await next(request, context)
    }
}
