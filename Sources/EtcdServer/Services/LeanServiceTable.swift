import EtcdAPI
import EtcdCommon
import EtcdLeanRPC
import GRPCCore
import NIOCore
import NIOHPACK
import SwiftProtobuf

/// The unary methods the lean gRPC server answers, each calling the same service code as the
/// grpc-swift path, with the same errors: a request is decoded from its bytes, the method runs,
/// and its response is encoded once into a buffer that already has room for gRPC's prefix.
///
/// Streaming methods (Watch, LeaseKeepAlive, Snapshot) are not served here; the lean listener
/// answers them UNIMPLEMENTED, and the client URLs keep serving them through grpc-swift.
struct LeanServiceTable: LeanRPCDispatcher {
    private struct Method: Sendable {
        let descriptor: MethodDescriptor
        let call: @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer
    }

    private let methods: [Method]
    private let indexByPath: [String: Int]
    /// Services and methods a gRPC client may name; the streaming ones among them are not served.
    private let knownServices: Set<String>
    private let status: MemberStatusBoard

    init(kv: KVService, lease: LeaseService, maintenance: MaintenanceService, cluster: ClusterService, status: MemberStatusBoard) {
        var methods: [Method] = []
        func add<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ descriptor: MethodDescriptor, _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
        ) {
            methods.append(Method(descriptor: descriptor) { bytes, context in
                let request: Request
                do {
                    request = try Request(serializedBytes: Array(bytes.readableBytesView))
                } catch {
                    throw RPCError(code: .internalError, message: "grpc: error unmarshalling request: \(error)")
                }
                let response = try await handler(request, context)
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
        addWithoutContext(Etcdserverpb_Maintenance.Method.Status.descriptor) { (_: Etcdserverpb_StatusRequest) in try maintenance.status() }
        addWithoutContext(Etcdserverpb_Maintenance.Method.Alarm.descriptor, maintenance.alarm)
        addWithoutContext(Etcdserverpb_Maintenance.Method.MoveLeader.descriptor, maintenance.moveLeader)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberList.descriptor, cluster.memberList)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberAdd.descriptor, cluster.memberAdd)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberRemove.descriptor, cluster.memberRemove)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberUpdate.descriptor, cluster.memberUpdate)
        addWithoutContext(Etcdserverpb_Cluster.Method.MemberPromote.descriptor, cluster.memberPromote)
        self.methods = methods
        self.indexByPath = Dictionary(uniqueKeysWithValues: methods.enumerated().map { ("/" + $0.element.descriptor.fullyQualifiedMethod, $0.offset) })
        self.knownServices = Set(methods.map { $0.descriptor.service.fullyQualifiedService } + ["etcdserverpb.Watch"])
        self.status = status
    }

    private static let allocator = ByteBufferAllocator()

    func route(path: String) -> LeanRPCRoute {
        if let index = indexByPath[path] { return .unary(index) }
        let name = path.hasPrefix("/") ? path.dropFirst() : path[...]
        guard let slash = name.lastIndex(of: "/") else { return .unknownService(String(name)) }
        let service = String(name[..<slash])
        let method = String(name[name.index(after: slash)...])
        if service == "etcdserverpb.Watch" && method == "Watch" { return .notServed }
        if service == "etcdserverpb.Lease" && method == "LeaseKeepAlive" { return .notServed }
        if service == "etcdserverpb.Maintenance" && method == "Snapshot" { return .notServed }
        return knownServices.contains(service) ? .unknownMethod(service: service, method: method) : .unknownService(service)
    }

    func callUnary(_ index: Int, request: ByteBuffer, head: LeanRPCRequestHead) async -> LeanRPCOutcome {
        let method = methods[index]
        // etcd's "hasleader" metadata: without a leader the call fails at once (see
        // RequireLeaderInterceptor, which does the same on the grpc-swift path).
        if head.metadata[canonicalForm: "hasleader"].contains("true"), status.leader == 0 {
            return .failure(.unavailable, EtcdError.noLeader.message)
        }
        do {
            let response = try await withServerContextRPCCancellationHandle { cancellation in
                let context = ServerContext(
                    descriptor: method.descriptor, remotePeer: "", localPeer: "", cancellation: cancellation)
                return try await method.call(request, context)
            }
            return .response(response)
        } catch {
            return Self.outcome(of: error)
        }
    }

    /// The status an error ends a call with, as grpc-swift would send it.
    private static func outcome(of error: any Error) -> LeanRPCOutcome {
        if let error = error as? RPCError {
            return .failure(GRPCStatusCode(rawValue: error.code.rawValue) ?? .unknown, error.message)
        }
        if let error = error as? any RPCErrorConvertible {
            return .failure(GRPCStatusCode(rawValue: error.rpcErrorCode.rawValue) ?? .unknown, error.rpcErrorMessage)
        }
        if error is CancellationError { return .failure(.cancelled, RequestProposer.cancelled.message) }
        return .failure(.unknown, "\(error)")
    }
}
