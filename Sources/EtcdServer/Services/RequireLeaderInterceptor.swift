import EtcdCommon
import GRPCCore

/// etcd's "hasleader" metadata (clientv3's `WithRequireLeader`, which etcdctl watch uses): a call
/// that asks for it on a member that knows no leader fails at once with "etcdserver: no leader"
/// rather than waiting on a member cut off from its cluster, and a stream that asked for it
/// (Watch, LeaseKeepAlive) ends with the same error once the member has had no leader for three
/// election timeouts in a row (etcd's `monitorLeader`), so that its client moves to a member
/// that has one.
struct RequireLeaderInterceptor: ServerInterceptor {
    let status: MemberStatusBoard
    /// How often a stream's member is checked for a leader (etcd: one election timeout).
    let checkInterval: Duration
    /// Checks in a row without a leader before the stream ends (etcd's `maxNoLeaderCnt`).
    static let checksWithoutLeader = 3

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard request.metadata[stringValues: "hasleader"].contains(where: { $0 == "true" }) else {
            return try await next(request, context)
        }
        let noLeader = RPCError(code: .unavailable, message: EtcdError.noLeader.message)
        if status.leader == 0 { return StreamingServerResponse(error: noLeader) }
        var response = try await next(request, context)
        guard context.descriptor.type != .unary, case .success(var contents) = response.accepted else { return response }
        let producer = contents.producer
        let status = self.status
        let interval = checkInterval
        contents.producer = { writer in
            try await Self.failingWithoutLeader(status: status, checkInterval: interval) { try await producer(writer) }
        }
        response.accepted = .success(contents)
        return response
    }

    /// Runs a stream's `body`, ending it with "etcdserver: no leader" (UNAVAILABLE) once the
    /// member has gone `checksWithoutLeader` checks in a row without a leader.
    static func failingWithoutLeader<Result: Sendable>(
        status: MemberStatusBoard, checkInterval: Duration, _ body: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        let noLeader = RPCError(code: .unavailable, message: EtcdError.noLeader.message)
        return try await withThrowingTaskGroup(of: Result?.self) { race in
            race.addTask { try await body() }
            race.addTask {
                var misses = 0
                while misses < checksWithoutLeader {
                    try await Task.sleep(for: checkInterval)
                    misses = status.leader == 0 ? misses + 1 : 0
                }
                throw noLeader
            }
            defer { race.cancelAll() }
            guard let result = try await race.next(), let result else { throw noLeader }
            return result
        }
    }
}
