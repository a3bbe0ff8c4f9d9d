import EtcdAPI
import GRPCCore
import SwiftProtobuf

/// A `WatchResponse` on its way to the transport: either a message to encode, or one whose
/// events were encoded once for every watcher that gets them.
///
/// When a revision reaches many watchers (a hot prefix), the responses differ only in their
/// watch ID; encoding the events once and copying their bytes behind each watcher's own header
/// and ID saves most of the per-watcher encoding. Protobuf allows the fields in any order and
/// the bytes are the same as SwiftProtobuf writes (fields in number order), which a test checks.
enum WatchWire: Sendable {
    case message(Etcdserverpb_WatchResponse)
    /// `header` (field 1) and `watch_id` (field 2), then `events` (field 11, already encoded).
    case events(header: Etcdserverpb_ResponseHeader, watchID: Int64, encodedEvents: [UInt8])

    /// The encoded `events` field of a response carrying `events`.
    static func encode(_ events: [Mvccpb_Event]) -> [UInt8] {
        var bytes: [UInt8] = []
        for event in events {
            // Encoding a message that has no unknown fields or required fields cannot fail.
            let encoded: [UInt8] = (try? event.serializedBytes()) ?? []
            bytes.append(0x5A)  // field 11, length-delimited
            appendVarint(UInt64(encoded.count), to: &bytes)
            bytes += encoded
        }
        return bytes
    }

    func serialized() throws -> [UInt8] {
        switch self {
        case .message(let response):
            return try response.serializedBytes()
        case .events(let header, let watchID, let encodedEvents):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(40 + encodedEvents.count)
            var headerBytes: [UInt8] = []
            Self.appendVarintField(1, header.clusterID, to: &headerBytes)
            Self.appendVarintField(2, header.memberID, to: &headerBytes)
            Self.appendVarintField(3, UInt64(bitPattern: header.revision), to: &headerBytes)
            Self.appendVarintField(4, header.raftTerm, to: &headerBytes)
            if !headerBytes.isEmpty {
                bytes.append(0x0A)  // field 1, length-delimited
                Self.appendVarint(UInt64(headerBytes.count), to: &bytes)
                bytes += headerBytes
            }
            Self.appendVarintField(2, UInt64(bitPattern: watchID), to: &bytes)
            bytes += encodedEvents
            return bytes
        }
    }

    /// A varint field, left out when zero (proto3's default).
    private static func appendVarintField(_ field: UInt64, _ value: UInt64, to bytes: inout [UInt8]) {
        guard value != 0 else { return }
        appendVarint(field << 3, to: &bytes)
        appendVarint(value, to: &bytes)
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }
}

/// Hands gRPC the bytes of a ``WatchWire``.
struct WatchWireSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: WatchWire) throws -> Bytes {
        Bytes(try message.serialized())
    }
}
