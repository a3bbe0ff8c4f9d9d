/// One version of a key as etcd's `mvccpb.KeyValue` reports it.
public struct KeyValue: Hashable, Sendable {
    /// The key's bytes.
    public var key: [UInt8]
    /// The revision of the put that created the key's current generation.
    public var createRevision: Int64
    /// The revision of the change that produced this version.
    public var modRevision: Int64
    /// How many puts this generation of the key has seen, from 1.
    public var version: Int64
    /// The value's bytes.
    public var value: [UInt8]
    /// The lease the key is attached to, 0 for none.
    public var lease: Int64

    /// Creates a key-value.
    public init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: Int64) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// How to read a range (etcd's `mvcc.RangeOptions`).
public struct RangeOptions: Sendable {
    /// The most key-values to return; 0 (or less) means no limit. `count` ignores it.
    public var limit: Int64
    /// The revision to read at; 0 (or less) means the current revision.
    public var revision: Int64
    /// Return only the count, no key-values.
    public var countOnly: Bool

    /// Creates options; the defaults read everything at the current revision.
    public init(limit: Int64 = 0, revision: Int64 = 0, countOnly: Bool = false) {
        self.limit = limit
        self.revision = revision
        self.countOnly = countOnly
    }
}

/// What a range read found (etcd's `mvcc.RangeResult`).
public struct RangeResult: Sendable {
    /// The key-values, ascending by key, at most `limit` of them.
    public var kvs: [KeyValue]
    /// The store's current revision when the read ran (the response header's revision).
    public var revision: Int64
    /// How many keys matched, ignoring `limit`.
    public var count: Int

    /// Creates a result.
    public init(kvs: [KeyValue], revision: Int64, count: Int) {
        self.kvs = kvs
        self.revision = revision
        self.count = count
    }
}

/// One change to the keyspace, as a watcher sees it (etcd's `mvccpb.Event`).
public struct MVCCEvent: Hashable, Sendable {
    /// Whether the change stored a value or deleted the key.
    public enum Kind: Hashable, Sendable {
        /// A put: `kv` is the new version.
        case put
        /// A delete: `kv` carries only `key` and `modRevision`, as in etcd's delete events.
        case delete
    }

    /// The kind of change.
    public var kind: Kind
    /// The key-value after the change (see ``Kind/delete`` for deletes).
    public var kv: KeyValue

    /// Creates an event.
    public init(kind: Kind, kv: KeyValue) {
        self.kind = kind
        self.kv = kv
    }
}

/// Everything one write transaction changed: the events of one revision, in sub-revision order.
public struct RevisionChanges: Hashable, Sendable {
    public var revision: Int64
    public var events: [MVCCEvent]

    public init(revision: Int64, events: [MVCCEvent]) {
        self.revision = revision
        self.events = events
    }
}

/// The answer of ``MVCCStore/hashKV(revision:)`` (etcd's HashKV response fields).
public struct KVHash: Hashable, Sendable {
    /// CRC-32C of the hashed rows.
    public var hash: UInt32
    /// The store's current revision when hashed (the response header's revision).
    public var revision: Int64
    /// The compacted revision when hashed (-1 if never compacted, as etcd reports it).
    public var compactRevision: Int64
    /// The revision the history was hashed up to.
    public var hashRevision: Int64

    /// Creates a hash result.
    public init(hash: UInt32, revision: Int64, compactRevision: Int64, hashRevision: Int64) {
        self.hash = hash
        self.revision = revision
        self.compactRevision = compactRevision
        self.hashRevision = hashRevision
    }
}

/// A hash being computed in pieces (see ``MVCCStore/startHashKV(revision:)``).
public struct HashProgress: Sendable {
    let atRevision: Int64
    /// The store's revision when the hash started (the response header's revision).
    let currentRevision: Int64
    let compactRevision: Int64
    let keep: Set<Revision>
    let pendingDeletion: Set<Revision>
    /// HashKV skips compacted rows; Hash counts every row.
    let skipsCompacted: Bool
    var crc = CRC32C()
    /// The last row hashed so far.
    var after: Revision?

    init(
        atRevision: Int64, currentRevision: Int64, compactRevision: Int64, keep: Set<Revision>,
        pendingDeletion: Set<Revision>, skipsCompacted: Bool
    ) {
        self.atRevision = atRevision
        self.currentRevision = currentRevision
        self.compactRevision = compactRevision
        self.keep = keep
        self.pendingDeletion = pendingDeletion
        self.skipsCompacted = skipsCompacted
        crc.update(Array("key".utf8))
    }
}
