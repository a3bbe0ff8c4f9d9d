public import EtcdRaft

/// The wire form of Raft messages between members: one frame carries a batch of messages for
/// one peer (the transport batches whatever Raft produced in a Ready cycle).
///
/// A frame is `u32 body length` then the body: `u8 version`, `u32 message count`, the messages.
/// Integers are little-endian; byte strings are a u32 length and the bytes. Each message is:
/// type u8, to, from, term, log term, index, commit, reject hint (u64 each), reject u8, context
/// (bytes), entry count u32 and entries (term u64, index u64, type u8, data bytes), then a u8
/// saying whether a snapshot follows (index u64, term u64, voter and learner counts u32 with
/// their IDs u64, data bytes).
///
/// The format is our own rather than etcd's raftpb: members only talk to members of the same
/// build. Decoding treats the bytes as hostile: every count and length is checked against what
/// the frame still holds and against the limits, unknown values are refused, and messages that
/// a node only generates for itself (`MessageType.isLocal`) are refused too, so that nothing a
/// peer sends can reach one of Raft's preconditions.
public struct PeerMessageCodec: Sendable {
    public static let version: UInt8 = 1
    /// Bytes of the length prefix in front of every frame.
    public static let lengthPrefixBytes = 4

    /// The largest frame body accepted or produced. Appends are bounded by Raft's own
    /// `maxSizePerMessage`, and snapshots travel on their own channel, so a frame this large is
    /// already far beyond anything a well-behaved peer sends.
    public var maxFrameBytes: Int
    /// Most messages in one frame.
    public var maxMessagesPerFrame: Int
    /// Most entries in one message.
    public var maxEntriesPerMessage: Int
    /// Most members named in a snapshot's configuration.
    public var maxMembers: Int

    public init(
        maxFrameBytes: Int = 64 << 20, maxMessagesPerFrame: Int = 10_000, maxEntriesPerMessage: Int = 100_000,
        maxMembers: Int = 1_000
    ) {
        self.maxFrameBytes = maxFrameBytes
        self.maxMessagesPerFrame = maxMessagesPerFrame
        self.maxEntriesPerMessage = maxEntriesPerMessage
        self.maxMembers = maxMembers
    }

    // MARK: Encoding

    /// The frame for `messages`, length prefix included. Throws `.tooLarge` when the batch
    /// exceeds a limit (the transport then splits it or drops the oversize message).
    public func encode(_ messages: [Message]) throws(PeerCodecError) -> [UInt8] {
        guard messages.count <= maxMessagesPerFrame else {
            throw .tooLarge(what: "message count", size: UInt64(messages.count), limit: UInt64(maxMessagesPerFrame))
        }
        var body: [UInt8] = [Self.version]
        body.appendLittleEndian(UInt32(messages.count))
        for message in messages {
            try encode(message, into: &body)
            guard body.count <= maxFrameBytes else {
                throw .tooLarge(what: "frame", size: UInt64(body.count), limit: UInt64(maxFrameBytes))
            }
        }
        var frame: [UInt8] = []
        frame.reserveCapacity(Self.lengthPrefixBytes + body.count)
        frame.appendLittleEndian(UInt32(body.count))
        frame.append(contentsOf: body)
        return frame
    }

    private func encode(_ message: Message, into body: inout [UInt8]) throws(PeerCodecError) {
        guard message.entries.count <= maxEntriesPerMessage else {
            throw .tooLarge(
                what: "entry count", size: UInt64(message.entries.count), limit: UInt64(maxEntriesPerMessage))
        }
        body.append(message.type.rawValue)
        for field in [
            message.to.rawValue, message.from.rawValue, message.term, message.logTerm, message.index,
            message.commit, message.rejectHint,
        ] {
            body.appendLittleEndian(field)
        }
        body.append(message.reject ? 1 : 0)
        try appendBytes(message.context, "context", into: &body)
        body.appendLittleEndian(UInt32(message.entries.count))
        for entry in message.entries {
            body.appendLittleEndian(entry.term)
            body.appendLittleEndian(entry.index)
            body.append(entry.type.rawValue)
            try appendBytes(entry.data, "entry data", into: &body)
        }
        guard let snapshot = message.snapshot else {
            body.append(0)
            return
        }
        body.append(1)
        body.appendLittleEndian(snapshot.metadata.index)
        body.appendLittleEndian(snapshot.metadata.term)
        for members in [snapshot.metadata.confState.voters, snapshot.metadata.confState.learners] {
            guard members.count <= maxMembers else {
                throw .tooLarge(what: "members", size: UInt64(members.count), limit: UInt64(maxMembers))
            }
            body.appendLittleEndian(UInt32(members.count))
            for member in members { body.appendLittleEndian(member.rawValue) }
        }
        try appendBytes(snapshot.data, "snapshot data", into: &body)
    }

    private func appendBytes(_ bytes: [UInt8], _ what: String, into body: inout [UInt8]) throws(PeerCodecError) {
        guard bytes.count <= maxFrameBytes else {
            throw .tooLarge(what: what, size: UInt64(bytes.count), limit: UInt64(maxFrameBytes))
        }
        body.appendLengthPrefixed(bytes)
    }

    // MARK: Decoding

    /// The body length a frame's prefix announces, once `prefix` holds at least 4 bytes (nil
    /// before); throws when it is over the limit, so that a reader never buffers for it.
    public func bodyLength(prefix: some Collection<UInt8>) throws(PeerCodecError) -> Int? {
        guard prefix.count >= Self.lengthPrefixBytes else { return nil }
        var length = 0
        for (position, byte) in prefix.prefix(Self.lengthPrefixBytes).enumerated() {
            length |= Int(byte) << (8 * position)
        }
        guard length <= maxFrameBytes else {
            throw .tooLarge(what: "frame", size: UInt64(length), limit: UInt64(maxFrameBytes))
        }
        return length
    }

    /// The messages in one frame body (the bytes after the length prefix).
    public func decode(body: [UInt8]) throws(PeerCodecError) -> [Message] {
        guard body.count <= maxFrameBytes else {
            throw .tooLarge(what: "frame", size: UInt64(body.count), limit: UInt64(maxFrameBytes))
        }
        var reader = ByteReader(body)
        let version = try reader.uint8("version")
        guard version == Self.version else { throw .unsupportedVersion(version) }
        // The smallest message is its fixed fields: 1 + 7 * 8 + 1 + 4 + 4 + 1 bytes.
        let count = try reader.count("message count", limit: maxMessagesPerFrame, minimumItemBytes: 67)
        var messages: [Message] = []
        messages.reserveCapacity(count)
        for _ in 0..<count {
            messages.append(try decodeMessage(&reader))
        }
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }
        return messages
    }

    private func decodeMessage(_ reader: inout ByteReader) throws(PeerCodecError) -> Message {
        let rawType = try reader.uint8("message type")
        guard let type = MessageType(rawValue: rawType) else { throw .invalid(what: "message type \(rawType)") }
        // A peer may not inject what a node only generates for itself (ticks, elections).
        guard !type.isLocal else { throw .invalid(what: "message type \(type) (local only)") }
        var message = Message(type: type)
        message.to = NodeID(try reader.uint64("to"))
        message.from = NodeID(try reader.uint64("from"))
        message.term = try reader.uint64("term")
        message.logTerm = try reader.uint64("log term")
        message.index = try reader.uint64("index")
        message.commit = try reader.uint64("commit")
        message.rejectHint = try reader.uint64("reject hint")
        switch try reader.uint8("reject") {
        case 0: message.reject = false
        case 1: message.reject = true
        case let other: throw .invalid(what: "reject flag \(other)")
        }
        message.context = try reader.lengthPrefixed("context", limit: maxFrameBytes)
        // The smallest entry is 8 + 8 + 1 + 4 bytes.
        let entryCount = try reader.count("entry count", limit: maxEntriesPerMessage, minimumItemBytes: 21)
        message.entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let term = try reader.uint64("entry term")
            let index = try reader.uint64("entry index")
            let rawEntryType = try reader.uint8("entry type")
            guard let entryType = EntryType(rawValue: rawEntryType) else {
                throw .invalid(what: "entry type \(rawEntryType)")
            }
            let data = try reader.lengthPrefixed("entry data", limit: maxFrameBytes)
            message.entries.append(Entry(term: term, index: index, type: entryType, data: data))
        }
        switch try reader.uint8("snapshot flag") {
        case 0: break
        case 1: message.snapshot = try decodeSnapshot(&reader)
        case let other: throw .invalid(what: "snapshot flag \(other)")
        }
        return message
    }

    private func decodeSnapshot(_ reader: inout ByteReader) throws(PeerCodecError) -> Snapshot {
        let index = try reader.uint64("snapshot index")
        let term = try reader.uint64("snapshot term")
        var groups: [[NodeID]] = []
        for what in ["voters", "learners"] {
            let count = try reader.count(what, limit: maxMembers, minimumItemBytes: 8)
            var members: [NodeID] = []
            for _ in 0..<count { members.append(NodeID(try reader.uint64(what))) }
            groups.append(members)
        }
        let data = try reader.lengthPrefixed("snapshot data", limit: maxFrameBytes)
        let confState = ConfState(voters: groups[0], learners: groups[1])
        return Snapshot(metadata: SnapshotMetadata(index: index, term: term, confState: confState), data: data)
    }
}
