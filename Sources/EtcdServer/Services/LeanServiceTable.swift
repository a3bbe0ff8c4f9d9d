import EtcdAPI
import EtcdCommon
import EtcdLeanRPC
import GRPCCore
import NIOCore
import NIOHPACK
import Prometheus
import SwiftProtobuf

/// The methods the lean gRPC server answers, each calling the same service code as the
/// grpc-swift path, with the same errors. A unary request is decoded from its bytes, the method
/// runs, and its response is encoded once into a buffer that already has room for gRPC's prefix.
/// A streaming method (Watch, LeaseKeepAlive) gets its requests decoded as they arrive and its
/// responses encoded as it writes them, through grpc-swift's own stream types, so that the
/// service code is the one both servers run.
struct LeanServiceTable: LeanRPCDispatcher {
    private struct Method: Sendable {
        let descriptor: MethodDescriptor
        let call: @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer
    }

    private struct StreamingMethod: Sendable {
        let descriptor: MethodDescriptor
        let call: @Sendable (LeanRPCRequestStream, LeanRPCResponseStream, ServerContext) async throws -> Void
    }

    private let methods: [Method]
    private let streamingMethods: [StreamingMethod]
    private let routeByPath: [String: LeanRPCRoute]
    /// Services a gRPC client may name (for grpc-go's "unknown method" versus "unknown service").
    private let knownServices: Set<String>
    private let status: MemberStatusBoard
    /// How often a stream that asked for a leader checks that there is one.
    private let leaderCheckInterval: Duration
    /// `/metrics`: the byte counters, and each method's call counters (in the order of
    /// `methods` and `streamingMethods`, so that a call finds its own by index).
    private let metrics: ServerMetrics?
    private let unaryCounters: [GRPCServerMetrics.MethodCounters?]
    private let streamingCounters: [GRPCServerMetrics.MethodCounters?]

    init(
        kv: KVService, lease: LeaseService, maintenance: MaintenanceService, cluster: ClusterService, watch: WatchService,
        auth: AuthService, status: MemberStatusBoard, leaderCheckInterval: Duration, metrics: ServerMetrics? = nil
    ) {
        var methods: [Method] = []
        func add<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ descriptor: MethodDescriptor, _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
        ) {
            methods.append(Method(descriptor: descriptor) { bytes, context in
                let response = try await handler(try Self.decode(bytes), context)
                let encoded: [UInt8] = try response.serializedBytes()
                return GRPCMessageWriter.frame(encoded, allocator: Self.allocator)
            })
        }
        add(Etcdserverpb_KV.Method.Range.descriptor, kv.range)
        add(Etcdserverpb_KV.Method.Put.descriptor, kv.put)
        add(Etcdserverpb_KV.Method.DeleteRange.descriptor, kv.deleteRange)
        add(Etcdserverpb_KV.Method.Txn.descriptor, kv.txn)
        add(Etcdserverpb_KV.Method.Compact.descriptor, kv.compact)
        add(Etcdserverpb_Lease.Method.LeaseGrant.descriptor, lease.leaseGrant)
        add(Etcdserverpb_Lease.Method.LeaseRevoke.descriptor, lease.leaseRevoke)
        add(Etcdserverpb_Lease.Method.LeaseTimeToLive.descriptor, lease.leaseTimeToLive)
        add(Etcdserverpb_Lease.Method.LeaseLeases.descriptor, lease.leaseLeases)
        // Methods whose service code takes no ServerContext.
        func addWithoutContext<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ descriptor: MethodDescriptor, _ handler: @escaping @Sendable (Request) async throws -> Response
        ) {
            add(descriptor) { (request: Request, _: ServerContext) in try await handler(request) }
        }
        add(Etcdserverpb_Auth.Method.AuthEnable.descriptor, auth.authEnable)
        add(Etcdserverpb_Auth.Method.AuthDisable.descriptor, auth.authDisable)
        add(Etcdserverpb_Auth.Method.AuthStatus.descriptor, auth.authStatus)
        add(Etcdserverpb_Auth.Method.Authenticate.descriptor, auth.authenticate)
        add(Etcdserverpb_Auth.Method.UserAdd.descriptor, auth.userAdd)
        add(Etcdserverpb_Auth.Method.UserGet.descriptor, auth.userGet)
        add(Etcdserverpb_Auth.Method.UserList.descriptor, auth.userList)
        add(Etcdserverpb_Auth.Method.UserDelete.descriptor, auth.userDelete)
        add(Etcdserverpb_Auth.Method.UserChangePassword.descriptor, auth.userChangePassword)
        add(Etcdserverpb_Auth.Method.UserGrantRole.descriptor, auth.userGrantRole)
        add(Etcdserverpb_Auth.Method.UserRevokeRole.descriptor, auth.userRevokeRole)
        add(Etcdserverpb_Auth.Method.RoleAdd.descriptor, auth.roleAdd)
        add(Etcdserverpb_Auth.Method.RoleGet.descriptor, auth.roleGet)
        add(Etcdserverpb_Auth.Method.RoleList.descriptor, auth.roleList)
        add(Etcdserverpb_Auth.Method.RoleDelete.descriptor, auth.roleDelete)
        add(Etcdserverpb_Auth.Method.RoleGrantPermission.descriptor, auth.roleGrantPermission)
        add(Etcdserverpb_Auth.Method.RoleRevokePermission.descriptor, auth.roleRevokePermission)
        addWithoutContext(Etcdserverpb_Maintenance.Method.Status.descriptor) { (_: Etcdserverpb_StatusRequest) in try await maintenance.status() }
        addWithoutContext(Etcdserverpb_Maintenance.Method.Alarm.descriptor, maintenance.alarm)
        addWithoutContext(Etcdserverpb_Maintenance.Method.MoveLeader.descriptor, maintenance.moveLeader)
        addWithoutContext(Etcdserverpb_Maintenance.Method.HashKV.descriptor, maintenance.hashKV)
        addWithoutContext(Etcdserverpb_Maintenance.Method.Defragment.descriptor) { (_: Etcdserverpb_DefragmentRequest) in
            try await maintenance.defragment()
        }
        addWithoutContext(Etcdserverpb_Maintenance.Method.Hash.descriptor) { (_: Etcdserverpb_HashRequest) in try await maintenance.hash() }
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberList.descriptor, cluster.memberList)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberAdd.descriptor, cluster.memberAdd)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberRemove.descriptor, cluster.memberRemove)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberUpdate.descriptor, cluster.memberUpdate)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberPromote.descriptor, cluster.memberPromote)

        var streamingMethods: [StreamingMethod] = []
        func addStreaming<Request: SwiftProtobuf.Message, Response: Sendable>(
            _ descriptor: MethodDescriptor, encode: @escaping @Sendable (Response) throws -> [UInt8],
            _ handler: @escaping @Sendable (RPCAsyncSequence<Request, any Error>, RPCWriter<Response>, ServerContext) async throws -> Void
        ) {
            streamingMethods.append(StreamingMethod(descriptor: descriptor) { requests, responses, context in
                try await handler(
                    RPCAsyncSequence(wrapping: DecodedRequests<Request>(base: requests)),
                    RPCWriter(wrapping: EncodingWriter(responses: responses, encode: encode)),
                    context)
            })
        }
        addStreaming(Etcdserverpb_Watch.Method.Watch.descriptor, encode: { (wire: WatchWire) in try wire.serialized() }) {
            try await watch.watch(request: $0, response: $1, context: $2)
        }
        addStreaming(
            Etcdserverpb_Maintenance.Method.Snapshot.descriptor,
            encode: { (response: Etcdserverpb_SnapshotResponse) in try response.serializedBytes() }
        ) {
            try await maintenance.snapshot(request: $0, response: $1, context: $2)
        }
        addStreaming(
            Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor,
            encode: { (response: Etcdserverpb_LeaseKeepAliveResponse) in try response.serializedBytes() }
        ) {
            try await lease.leaseKeepAlive(request: $0, response: $1, context: $2)
        }

        self.methods = methods
        self.streamingMethods = streamingMethods
        var routes: [String: LeanRPCRoute] = [:]
        for (index, method) in methods.enumerated() { routes["/" + method.descriptor.fullyQualifiedMethod] = .unary(index) }
        for (index, method) in streamingMethods.enumerated() { routes["/" + method.descriptor.fullyQualifiedMethod] = .streaming(index) }
        self.routeByPath = routes
        self.knownServices = Set(
            methods.map { $0.descriptor.service.fullyQualifiedService } + streamingMethods.map { $0.descriptor.service.fullyQualifiedService })
        self.status = status
        self.leaderCheckInterval = leaderCheckInterval
        self.metrics = metrics
        unaryCounters = methods.map { metrics?.grpc.counters(path: "/" + $0.descriptor.fullyQualifiedMethod) }
        streamingCounters = streamingMethods.map { metrics?.grpc.counters(path: "/" + $0.descriptor.fullyQualifiedMethod) }
    }

    private static let allocator = ByteBufferAllocator()

    /// Room for Txns nested deeper than the limit (each level is two messages), so that they get
    /// the validator's error as on etcd, while the depth stays far from the stack's limit;
    /// deeper messages fail to decode (INTERNAL, as grpc-go's unmarshalling errors).
    static let decodingOptions: BinaryDecodingOptions = {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 256
        return options
    }()

    /// A request message from its bytes; one that does not decode ends the call as grpc-go's
    /// server ends it.
    static func decode<Request: SwiftProtobuf.Message>(_ bytes: ByteBuffer) throws -> Request {
        do {
            return try Request(serializedBytes: Array(bytes.readableBytesView), options: decodingOptions)
        } catch {
            throw RPCError(code: .internalError, message: "grpc: error unmarshalling request: \(error)")
        }
    }

    func route(path: String) -> LeanRPCRoute {
        if let route = routeByPath[path] { return route }
        let name = path.hasPrefix("/") ? path.dropFirst() : path[...]
        guard let slash = name.lastIndex(of: "/") else { return .unknownService(String(name)) }
        let service = String(name[..<slash])
        let method = String(name[name.index(after: slash)...])
        return knownServices.contains(service) ? .unknownMethod(service: service, method: method) : .unknownService(service)
    }

    func callUnary(_ index: Int, request: ByteBuffer, head: LeanRPCRequestHead) async -> LeanRPCOutcome {
        let method = methods[index]
        let counters = unaryCounters[index]
        counters?.started.increment()
        counters?.received.increment()
        metrics?.clientReceivedBytes.increment(by: Int64(request.readableBytes))
        let outcome = await callUnary(method, request: request, head: head)
        switch outcome {
        case .response(let response):
            counters?.sent.increment()
            counters?.handled(code: 0).increment()
            metrics?.clientSentBytes.increment(by: Int64(response.readableBytes))
        case .failure(let code, _):
            counters?.handled(code: Int(code.rawValue)).increment()
        }
        return outcome
    }

    private func callUnary(_ method: Method, request: ByteBuffer, head: LeanRPCRequestHead) async -> LeanRPCOutcome {
        // etcd's "hasleader" metadata: without a leader the call fails at once (see
        // RequireLeaderInterceptor, which does the same on the grpc-swift path).
        if head.metadata[canonicalForm: "hasleader"].contains("true"), status.leader == 0 {
            return .failure(.unavailable, EtcdError.noLeader.message)
        }
        do {
            let response = try await withServerContextRPCCancellationHandle { cancellation in
                let context = ServerContext(
                    descriptor: method.descriptor, remotePeer: "", localPeer: "", cancellation: cancellation)
                return try await RequestCredentials.with(RequestCredentials(head: head)) {
                    try await method.call(request, context)
                }
            }
            return .response(response)
        } catch {
            let status = Self.status(of: error)
            return .failure(status.code, status.message)
        }
    }

    func callStreaming(
        _ index: Int, requests: LeanRPCRequestStream, responses: LeanRPCResponseStream, head: LeanRPCRequestHead
    ) async -> LeanRPCStatus {
        let method = streamingMethods[index]
        let counters = streamingCounters[index]
        counters?.started.increment()
        let status = await callStreaming(method, requests: requests, responses: responses, head: head)
        counters?.handled(code: Int(status.code.rawValue)).increment()
        return status
    }

    private func callStreaming(
        _ method: StreamingMethod, requests: LeanRPCRequestStream, responses: LeanRPCResponseStream, head: LeanRPCRequestHead
    ) async -> LeanRPCStatus {
        let requiresLeader = head.metadata[canonicalForm: "hasleader"].contains("true")
        if requiresLeader, status.leader == 0 { return LeanRPCStatus(.unavailable, EtcdError.noLeader.message) }
        let (status, interval) = (self.status, leaderCheckInterval)
        do {
            try await withServerContextRPCCancellationHandle { cancellation in
                let context = ServerContext(descriptor: method.descriptor, remotePeer: "", localPeer: "", cancellation: cancellation)
                // The services learn that the client went away from the context's handle (as
                // grpc-swift tells them), and this task is cancelled when it does.
                try await withTaskCancellationHandler {
                    try await RequestCredentials.with(RequestCredentials(head: head)) {
                    if requiresLeader {
                        // As RequireLeaderInterceptor on the grpc-swift path.
                        try await RequireLeaderInterceptor.failingWithoutLeader(status: status, checkInterval: interval) {
                            try await method.call(requests, responses, context)
                        }
                    } else {
                        try await method.call(requests, responses, context)
                    }
                    }
                } onCancel: {
                    cancellation.cancel()
                }
            }
            return .ok
        } catch {
            return Self.status(of: error)
        }
    }

    /// The status an error ends a call with, as grpc-swift would send it.
    static func status(of error: any Error) -> LeanRPCStatus {
        if let error = error as? RPCError {
            return LeanRPCStatus(GRPCStatusCode(rawValue: error.code.rawValue) ?? .unknown, error.message)
        }
        if let error = error as? any RPCErrorConvertible {
            return LeanRPCStatus(GRPCStatusCode(rawValue: error.rpcErrorCode.rawValue) ?? .unknown, error.rpcErrorMessage)
        }
        if error is CancellationError { return LeanRPCStatus(.cancelled, RequestProposer.cancelled.message) }
        return LeanRPCStatus(.unknown, "\(error)")
    }
}

/// A streaming call's request messages, decoded as they are read (see `LeanServiceTable.decode`).
private struct DecodedRequests<Request: SwiftProtobuf.Message>: AsyncSequence, Sendable {
    let base: LeanRPCRequestStream

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: LeanRPCRequestStream.AsyncIterator

        mutating func next() async throws -> Request? {
            guard let bytes = try await base.next() else { return nil }
            return try LeanServiceTable.decode(bytes)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
}

/// Encodes and frames a streaming call's responses; a batch is written (and flushed) together.
private struct EncodingWriter<Response: Sendable>: RPCWriterProtocol {
    let responses: LeanRPCResponseStream
    let encode: @Sendable (Response) throws -> [UInt8]
    private static var allocator: ByteBufferAllocator { ByteBufferAllocator() }

    func write(_ element: Response) async throws {
        try await write(contentsOf: CollectionOfOne(element))
    }

    func write(contentsOf elements: some Sequence<Response>) async throws {
        let framed = try elements.map { GRPCMessageWriter.frame(try encode($0), allocator: Self.allocator) }
        try await responses.write(framed)
    }
}
