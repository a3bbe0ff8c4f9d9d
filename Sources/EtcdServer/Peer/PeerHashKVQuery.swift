import EtcdAPI
import EtcdRaft
import NIOCore
import NIOPosix
import SwiftProtobuf

/// A leader's corruption check asks each peer for its HashKV on the peer port, as etcd asks on
/// its peers' `/members/hashkv`: not through the client port, where HashKV is an admin's call
/// once auth is on (and a member has no user to make it as). The request is a handshake that
/// names no sender and no recipient but this cluster, then the revision (8 bytes,
/// little-endian); the answer is length-prefixed: a kind byte (0, the HashKVResponse; 1, why
/// there is none, as text), then its bytes, after which the member closes the connection.
enum PeerHashKVQuery {
    static func handshake(clusterID: UInt64) -> PeerHandshake {
        PeerHandshake(from: .none, to: .none, clusterID: clusterID)
    }

    static let revisionBytes = 8
    static let maxAnswerBytes = 1 << 16

    static func request(clusterID: UInt64, revision: Int64) -> [UInt8] {
        handshake(clusterID: clusterID).encoded + (0..<revisionBytes).map { UInt8(truncatingIfNeeded: revision >> (8 * $0)) }
    }

    static func revision(of bytes: [UInt8]) -> Int64 {
        bytes.enumerated().reduce(0) { $0 | Int64($1.element) << (8 * $1.offset) }
    }

    static func encodeAnswer(_ result: Result<Etcdserverpb_HashKVResponse, any Error>) -> [UInt8] {
        var payload: [UInt8]
        switch result {
        case .success(let response):
            payload = [0] + ((try? response.serializedBytes()) ?? [])
        case .failure(let error):
            payload = [1] + Array("\(error)".utf8.prefix(maxAnswerBytes - 1))
        }
        return PeerQueryExchange.lengthPrefix(payload.count) + payload
    }

    enum QueryError: Error, CustomStringConvertible {
        case refused(String)
        case badAnswer(String)

        var description: String {
            switch self {
            case .refused(let reason): "the member has no hash: \(reason)"
            case .badAnswer(let reason): "the member's answer is not a hash: \(reason)"
            }
        }
    }

    /// Asks the member listening for peers on `host`:`port` for its HashKV at `revision`.
    static func fetch(
        host: String, port: Int, clusterID: UInt64, revision: Int64, tls: TLSContexts?, timeout: Duration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Etcdserverpb_HashKVResponse {
        let answer = try await PeerQueryExchange.run(
            host: host, port: port, tls: tls, group: group, request: request(clusterID: clusterID, revision: revision),
            maxAnswerBytes: maxAnswerBytes, timeout: timeout)
        guard let kind = answer.first else { throw QueryError.badAnswer("empty") }
        let body = Array(answer.dropFirst())
        guard kind == 0 else { throw QueryError.refused(String(decoding: body, as: UTF8.self)) }
        do {
            return try Etcdserverpb_HashKVResponse(serializedBytes: body)
        } catch {
            throw QueryError.badAnswer("\(error)")
        }
    }
}

/// One request and one length-prefixed answer on a fresh connection to a peer port (TLS in front
/// for an `https` peer URL): the shape of the peer port's queries.
enum PeerQueryExchange {
    /// A length as the answers carry it: u32, little-endian.
    static func lengthPrefix(_ length: Int) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: UInt32(length) >> (8 * UInt32($0))) }
    }

    /// Sends `request` and returns the answer's bytes (without their length), or throws
    /// `unreachable` when none came within `timeout`.
    static func run(
        host: String, port: Int, tls: TLSContexts?, group: any EventLoopGroup, request: [UInt8], maxAnswerBytes: Int,
        timeout: Duration
    ) async throws -> [UInt8] {
        try await withThrowingTaskGroup(of: [UInt8]?.self) { race in
            race.addTask {
                try await exchange(
                    host: host, port: port, tls: tls, group: group, request: request, maxAnswerBytes: maxAnswerBytes)
            }
            race.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { race.cancelAll() }
            guard let first = try await race.next(), let answer = first else {
                throw PeerClusterQuery.QueryError.unreachable("no answer within \(timeout)")
            }
            return answer
        }
    }

    private static func exchange(
        host: String, port: Int, tls: TLSContexts?, group: any EventLoopGroup, request: [UInt8], maxAnswerBytes: Int
    ) async throws -> [UInt8] {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(1))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.addClientHandler(to: channel.pipeline.syncOperations, host: host)
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw PeerClusterQuery.QueryError.unreachable("\(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: request))
            var received: [UInt8] = []
            for try await buffer in inbound {
                received += buffer.readableBytesView
                if received.count > 4 + maxAnswerBytes {
                    throw PeerClusterQuery.QueryError.badAnswer("longer than \(maxAnswerBytes) bytes")
                }
                guard received.count >= 4 else { continue }
                let length = received.prefix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                guard length <= maxAnswerBytes else { throw PeerClusterQuery.QueryError.badAnswer("announces \(length) bytes") }
                if received.count >= 4 + length { return Array(received[4..<(4 + length)]) }
            }
            throw PeerClusterQuery.QueryError.badAnswer("the connection closed after \(received.count) bytes")
        }
    }
}
