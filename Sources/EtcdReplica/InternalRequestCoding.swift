public import EtcdAPI
public import SwiftProtobuf

/// How log entries are decoded, in one place for the two sides that must agree: apply, and the
/// proposer that checks a request before it may enter the log.
///
/// An entry that reached the WAL but cannot be decoded stops the member at apply, and again on
/// every restart (the entry is committed and cannot be skipped without forking state). So the
/// proposer decodes every entry with exactly these options before proposing it, and the depth
/// allowed here is above anything gRPC's ingress can deliver (SwiftProtobuf's default of 100
/// levels) plus the one level the entry adds around the request.
public enum InternalRequestCoding {
    public static let decodingOptions: BinaryDecodingOptions = {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 128
        return options
    }()

    public static func decode(_ bytes: some Collection<UInt8>) throws -> Etcdserverpb_InternalRaftRequest {
        try Etcdserverpb_InternalRaftRequest(serializedBytes: Array(bytes), options: decodingOptions)
    }
}
