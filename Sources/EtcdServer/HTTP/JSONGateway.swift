import EtcdAPI
import EtcdCommon
import EtcdLeanRPC
import GRPCCore
import NIOCore
import NIOHTTP1
import Prometheus
import SwiftProtobuf

/// etcd's grpc-gateway: the unary RPCs as `POST /v3/...` with JSON bodies, answered by the same
/// service code as gRPC (the lean table's and grpc-swift's).
///
/// JSON as the gateway writes it: proto field names (`cluster_id`, `ID`, `dbSize`), int64 as
/// strings, bytes as base64, default values left out; unknown fields in requests are ignored. An
/// error is `{"error":…,"code":…,"message":…}` with the gRPC code, under the HTTP status
/// grpc-gateway gives that code.
struct JSONGateway: Sendable {
    typealias Call = @Sendable (ByteBuffer) async -> HTTPResponse

    private let routes: [String: Call]
    /// Who the gateway's callers are: with auth and `--client-cert-auth` on, a client
    /// certificate's CommonName is refused here rather than taken as the user (see `respond`).
    private let authenticator: Authenticator

    init(
        kv: KVService, lease: LeaseService, maintenance: MaintenanceService, cluster: ClusterService, watch: WatchService,
        auth: AuthService, metrics: GRPCServerMetrics?
    ) {
        var routes: [String: Call] = [:]
        func add<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ paths: [String], _ descriptor: MethodDescriptor,
            _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
        ) {
            let counters = metrics?.counters(path: "/" + descriptor.fullyQualifiedMethod)
            let call: Call = { body in
                await Self.serve(body, descriptor: descriptor, counters: counters, handler)
            }
            for path in paths { routes[path] = call }
        }
        func add<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ paths: [String], _ descriptor: MethodDescriptor,
            withoutContext handler: @escaping @Sendable (Request) async throws -> Response
        ) {
            add(paths, descriptor) { (request: Request, _: ServerContext) in try await handler(request) }
        }
        add(["/v3/kv/range"], Etcdserverpb_KV.Method.Range.descriptor, kv.range)
        add(["/v3/kv/put"], Etcdserverpb_KV.Method.Put.descriptor, kv.put)
        add(["/v3/kv/deleterange"], Etcdserverpb_KV.Method.DeleteRange.descriptor, kv.deleteRange)
        add(["/v3/kv/txn"], Etcdserverpb_KV.Method.Txn.descriptor, kv.txn)
        add(["/v3/kv/compaction"], Etcdserverpb_KV.Method.Compact.descriptor, kv.compact)
        add(["/v3/lease/grant"], Etcdserverpb_Lease.Method.LeaseGrant.descriptor, lease.leaseGrant)
        // etcd keeps the 3.2 paths under /v3/kv/lease/ as aliases.
        add(["/v3/lease/revoke", "/v3/kv/lease/revoke"], Etcdserverpb_Lease.Method.LeaseRevoke.descriptor, lease.leaseRevoke)
        add(
            ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"], Etcdserverpb_Lease.Method.LeaseTimeToLive.descriptor,
            lease.leaseTimeToLive)
        add(["/v3/lease/leases", "/v3/kv/lease/leases"], Etcdserverpb_Lease.Method.LeaseLeases.descriptor, lease.leaseLeases)
        add(["/v3/cluster/member/list"], Etcdserverpb_Cluster.Method.MemberList.descriptor, withoutContext: cluster.memberList)
        add(["/v3/cluster/member/add"], Etcdserverpb_Cluster.Method.MemberAdd.descriptor, withoutContext: cluster.memberAdd)
        add(["/v3/cluster/member/remove"], Etcdserverpb_Cluster.Method.MemberRemove.descriptor, withoutContext: cluster.memberRemove)
        add(["/v3/cluster/member/update"], Etcdserverpb_Cluster.Method.MemberUpdate.descriptor, withoutContext: cluster.memberUpdate)
        add(["/v3/cluster/member/promote"], Etcdserverpb_Cluster.Method.MemberPromote.descriptor, withoutContext: cluster.memberPromote)
        add(["/v3/maintenance/status"], Etcdserverpb_Maintenance.Method.Status.descriptor, withoutContext: {
            (_: Etcdserverpb_StatusRequest) in try await maintenance.status()
        })
        add(["/v3/maintenance/alarm"], Etcdserverpb_Maintenance.Method.Alarm.descriptor, withoutContext: maintenance.alarm)
        add(["/v3/maintenance/hash"], Etcdserverpb_Maintenance.Method.Hash.descriptor, withoutContext: {
            (_: Etcdserverpb_HashRequest) in try await maintenance.hash()
        })
        add(["/v3/maintenance/hashkv"], Etcdserverpb_Maintenance.Method.HashKV.descriptor, withoutContext: maintenance.hashKV)
        add(
            ["/v3/maintenance/transfer-leadership"], Etcdserverpb_Maintenance.Method.MoveLeader.descriptor,
            withoutContext: maintenance.moveLeader)
        add(["/v3/auth/enable"], Etcdserverpb_Auth.Method.AuthEnable.descriptor, auth.authEnable)
        add(["/v3/auth/disable"], Etcdserverpb_Auth.Method.AuthDisable.descriptor, auth.authDisable)
        add(["/v3/auth/status"], Etcdserverpb_Auth.Method.AuthStatus.descriptor, auth.authStatus)
        add(["/v3/auth/authenticate"], Etcdserverpb_Auth.Method.Authenticate.descriptor, auth.authenticate)
        add(["/v3/auth/user/add"], Etcdserverpb_Auth.Method.UserAdd.descriptor, auth.userAdd)
        add(["/v3/auth/user/get"], Etcdserverpb_Auth.Method.UserGet.descriptor, auth.userGet)
        add(["/v3/auth/user/list"], Etcdserverpb_Auth.Method.UserList.descriptor, auth.userList)
        add(["/v3/auth/user/delete"], Etcdserverpb_Auth.Method.UserDelete.descriptor, auth.userDelete)
        add(["/v3/auth/user/changepw"], Etcdserverpb_Auth.Method.UserChangePassword.descriptor, auth.userChangePassword)
        add(["/v3/auth/user/grant"], Etcdserverpb_Auth.Method.UserGrantRole.descriptor, auth.userGrantRole)
        add(["/v3/auth/user/revoke"], Etcdserverpb_Auth.Method.UserRevokeRole.descriptor, auth.userRevokeRole)
        add(["/v3/auth/role/add"], Etcdserverpb_Auth.Method.RoleAdd.descriptor, auth.roleAdd)
        add(["/v3/auth/role/get"], Etcdserverpb_Auth.Method.RoleGet.descriptor, auth.roleGet)
        add(["/v3/auth/role/list"], Etcdserverpb_Auth.Method.RoleList.descriptor, auth.roleList)
        add(["/v3/auth/role/delete"], Etcdserverpb_Auth.Method.RoleDelete.descriptor, auth.roleDelete)
        add(["/v3/auth/role/grant"], Etcdserverpb_Auth.Method.RoleGrantPermission.descriptor, auth.roleGrantPermission)
        add(["/v3/auth/role/revoke"], Etcdserverpb_Auth.Method.RoleRevokePermission.descriptor, auth.roleRevokePermission)
        // The streaming calls.
        let watchMethod = Etcdserverpb_Watch.Method.Watch.descriptor
        let watchCounters = metrics?.counters(path: "/" + watchMethod.fullyQualifiedMethod)
        routes["/v3/watch"] = { body in
            GatewayStream.response(
                to: body, descriptor: watchMethod, counters: watchCounters,
                encode: { (wire: WatchWire) in try Etcdserverpb_WatchResponse(serializedBytes: wire.serialized()) },
                call: { (requests: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>, responses, context) in
                    try await watch.watch(request: requests, response: responses, context: context)
                })
        }
        let keepAliveMethod = Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor
        let keepAliveCounters = metrics?.counters(path: "/" + keepAliveMethod.fullyQualifiedMethod)
        routes["/v3/lease/keepalive"] = { body in
            GatewayStream.response(
                to: body, descriptor: keepAliveMethod, counters: keepAliveCounters,
                encode: { (response: Etcdserverpb_LeaseKeepAliveResponse) in response },
                call: { (requests: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>, responses, context) in
                    try await lease.leaseKeepAlive(request: requests, response: responses, context: context)
                })
        }
        self.routes = routes
        authenticator = auth.authenticator
    }

    /// Answers `request` if its path is under `/v3/` (`/v3beta/` too, as etcd redirects it), or
    /// nil for another path.
    func respond(to request: HTTPRequest) async -> HTTPResponse? {
        // etcd does not let the gateway's callers act as their certificate's CommonName (gRPC
        // calls may): with auth and client certificate auth on, such a request is refused.
        if request.path.hasPrefix("/v3/"), let name = request.clientCertificateCommonName, !name.isEmpty,
            authenticator.clientCertificateAuth, authenticator.isEnabled
        {
            return .goError(.badRequest, "CommonName of client sending a request against gateway will be ignored and not used as expected")
        }
        var path = request.path
        if path.hasPrefix("/v3beta/") { path = "/v3/" + path.dropFirst("/v3beta/".count) }
        guard path.hasPrefix("/v3/") else { return nil }
        // grpc-gateway's own answers: an unknown path, and a known one with another method.
        guard let call = routes[path] else { return .goError(.notFound, "Not Found") }
        guard request.method == .POST else { return .goError(.methodNotAllowed, "Method Not Allowed") }
        return await RequestCredentials.with(request.token.map { RequestCredentials(token: $0) }) {
            await call(request.body)
        }
    }

    static let decodingOptions: JSONDecodingOptions = {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        options.messageDepthLimit = 256
        return options
    }()

    static let encodingOptions: JSONEncodingOptions = {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return options
    }()

    private static func serve<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ body: ByteBuffer, descriptor: MethodDescriptor, counters: GRPCServerMetrics.MethodCounters?,
        _ handler: @Sendable (Request, ServerContext) async throws -> Response
    ) async -> HTTPResponse {
        let request: Request
        switch decode(Request.self, from: Array(body.readableBytesView)) {
        case .success(let decoded): request = decoded
        case .failure(let failure): return error(code: .invalidArgument, message: failure.message)
        }
        // Through etcd's gateway a call is a gRPC call to the server itself, counted as one.
        counters?.started.increment()
        counters?.received.increment()
        do {
            let response: Response = try await ServiceCall.run(descriptor) { (context: ServerContext) async throws -> Response in
                try await handler(request, context)
            }
            let json: [UInt8] = try response.jsonUTF8Bytes(options: encodingOptions)
            counters?.sent.increment()
            counters?.handled(code: 0).increment()
            return HTTPResponse(
                status: .ok,
                headers: [("Content-Type", "application/json"), ("Grpc-Metadata-Content-Type", "application/grpc")],
                body: json)
        } catch {
            let status = LeanServiceTable.status(of: error)
            counters?.handled(code: Int(status.code.rawValue)).increment()
            return Self.error(code: status.code, message: status.message)
        }
    }

    /// The request in `bytes`, or the message etcd's gateway would answer it with.
    static func decode<Request: SwiftProtobuf.Message>(_: Request.Type, from bytes: [UInt8]) -> Result<Request, DecodingFailure> {
        switch GoJSONSyntax.firstValue(bytes) {
        case .empty:
            return .success(Request())
        case .syntaxError(let message):
            return .failure(DecodingFailure(message: message))
        case .value(let range):
            let value = bytes[range]
            switch value.first {
            case UInt8(ascii: "{"): break
            case UInt8(ascii: "n"): return .success(Request())
            case let first:
                // The gateway reads the body into a map of fields first.
                let kind = first == UInt8(ascii: "[") ? "array" : first == UInt8(ascii: "\"") ? "string"
                    : first == UInt8(ascii: "t") || first == UInt8(ascii: "f") ? "bool" : "number"
                return .failure(
                    DecodingFailure(message: "json: cannot unmarshal \(kind) into Go value of type map[string]json.RawMessage"))
            }
            do {
                return .success(try Request(jsonUTF8Bytes: Array(value), options: decodingOptions))
            } catch {
                return .failure(DecodingFailure(message: "json: cannot unmarshal request: \(error)"))
            }
        }
    }

    struct DecodingFailure: Error {
        var message: String
    }

    /// grpc-gateway's error body under the HTTP status it gives `code`.
    static func error(code: GRPCStatusCode, message: String) -> HTTPResponse {
        let escaped = jsonQuoted(message)
        let body = #"{"error":"# + escaped + #","code":"# + String(code.rawValue) + #","message":"# + escaped + "}"
        return HTTPResponse(
            status: httpStatus(code), headers: [("Content-Type", "application/json")], body: Array(body.utf8))
    }

    /// grpc-gateway's `HTTPStatusFromCode`.
    static func httpStatus(_ code: GRPCStatusCode) -> HTTPResponseStatus {
        switch code {
        case .cancelled: return .requestTimeout
        case .unknown, .internalError, .dataLoss: return .internalServerError
        case .invalidArgument, .failedPrecondition, .outOfRange: return .badRequest
        case .deadlineExceeded: return .gatewayTimeout
        case .notFound: return .notFound
        case .alreadyExists, .aborted: return .conflict
        case .permissionDenied: return .forbidden
        case .unauthenticated: return .unauthorized
        case .resourceExhausted: return .tooManyRequests
        case .unimplemented: return .notImplemented
        case .unavailable: return .serviceUnavailable
        default: return .internalServerError
        }
    }
}

/// `text` as a JSON string literal.
func jsonQuoted(_ text: String) -> String {
    var quoted = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": quoted += "\\\""
        case "\\": quoted += "\\\\"
        case "\n": quoted += "\\n"
        case "\r": quoted += "\\r"
        case "\t": quoted += "\\t"
        case "<", ">", "&", "\u{2028}", "\u{2029}", "\u{00}"..."\u{1F}":
            // Go's encoder escapes these too (HTML-safe JSON).
            let hex = String(scalar.value, radix: 16)
            quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: quoted.unicodeScalars.append(scalar)
        }
    }
    return quoted + "\""
}

/// Runs service code outside a gRPC server, with a server context of its own (as the lean
/// table does for its calls).
enum ServiceCall {
    static func run<Value: Sendable>(
        _ descriptor: MethodDescriptor, _ body: (ServerContext) async throws -> Value
    ) async throws -> Value {
        try await withServerContextRPCCancellationHandle { cancellation in
            let context = ServerContext(descriptor: descriptor, remotePeer: "", localPeer: "", cancellation: cancellation)
            return try await body(context)
        }
    }
}
