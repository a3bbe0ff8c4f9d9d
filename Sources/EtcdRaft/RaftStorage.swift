/// The stable log and state that Raft reads. Raft never writes to it: the application persists
/// what each `Ready` carries (entries, hard state, snapshot) and then calls `advance`.
///
/// Entries are indexed from `firstIndex()` to `lastIndex()`; the entry just before the first one
/// survives only as the term at `firstIndex() - 1` (the "dummy" entry behind a snapshot).
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and membership, read once when a node starts.
    func initialState() throws(RaftStorageError) -> (hardState: HardState, confState: ConfState)
    /// Entries in `[low, high)`, stopping once `maxBytes` is reached but always returning at
    /// least one entry when the range is not empty.
    func entries(from low: UInt64, to high: UInt64, maxBytes: Int) throws(RaftStorageError) -> [Entry]
    /// The term of the entry at `index`, which may be `firstIndex() - 1`.
    func term(at index: UInt64) throws(RaftStorageError) -> UInt64
    func firstIndex() throws(RaftStorageError) -> UInt64
    func lastIndex() throws(RaftStorageError) -> UInt64
    /// The most recent snapshot, sent to followers that lag behind `firstIndex()`.
    func snapshot() throws(RaftStorageError) -> Snapshot
}

/// An in-memory `RaftStorage`, used by tests, the simulator and anything that keeps its log in
/// memory. It is a reference type because the application writes it while Raft reads it.
///
/// Not thread-safe: it belongs to the one task that drives the node.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = HardState()
    public private(set) var currentSnapshot = Snapshot()
    /// The membership reported at startup: the latest one the application applied, which may be
    /// newer than the snapshot's (see `setConfState`).
    public private(set) var confState = ConfState()
    /// `entries[0]` is the dummy entry: the index and term of the last compacted entry.
    private var entries: [Entry] = [Entry(term: 0, index: 0)]

    public init() {}

    /// A storage whose log starts empty under the given membership, the usual way to bootstrap a
    /// group: every member starts with the same voters and no entries.
    public convenience init(confState: ConfState) {
        self.init()
        currentSnapshot.metadata.confState = confState
        self.confState = confState
    }

    public func initialState() throws(RaftStorageError) -> (hardState: HardState, confState: ConfState) {
        (hardState, confState)
    }

    public func setHardState(_ state: HardState) {
        hardState = state
    }

    /// Records the membership returned by `RaftNode.applyConfChange`, so that a node restarted
    /// from this storage (with `RaftConfiguration.applied` past that change) starts with it.
    public func setConfState(_ state: ConfState) {
        confState = state
    }

    private var dummyIndex: UInt64 { entries[0].index }

    public func entries(from low: UInt64, to high: UInt64, maxBytes: Int) throws(RaftStorageError) -> [Entry] {
        guard low > dummyIndex else { throw .compacted }
        guard high <= lastIndexValue + 1 else { throw .unavailable }
        precondition(low <= high, "storage: entries low \(low) > high \(high)")
        if entries.count == 1 { throw .unavailable }
        let start = Int(low - dummyIndex)
        let end = Int(high - dummyIndex)
        return limitSize(entries[start..<end], maxBytes: maxBytes)
    }

    public func term(at index: UInt64) throws(RaftStorageError) -> UInt64 {
        guard index >= dummyIndex else { throw .compacted }
        guard index <= lastIndexValue else { throw .unavailable }
        return entries[Int(index - dummyIndex)].term
    }

    public func firstIndex() throws(RaftStorageError) -> UInt64 { dummyIndex + 1 }
    public func lastIndex() throws(RaftStorageError) -> UInt64 { lastIndexValue }
    public func snapshot() throws(RaftStorageError) -> Snapshot { currentSnapshot }

    private var lastIndexValue: UInt64 { dummyIndex + UInt64(entries.count) - 1 }

    /// Replaces the whole log with `snapshot`, as a follower does when the leader sends one.
    public func applySnapshot(_ snapshot: Snapshot) throws(RaftStorageError) {
        guard snapshot.metadata.index > currentSnapshot.metadata.index else { throw .snapshotOutOfDate }
        currentSnapshot = snapshot
        confState = snapshot.metadata.confState
        entries = [Entry(term: snapshot.metadata.term, index: snapshot.metadata.index)]
    }

    /// Records a snapshot of the application state at `index` (which must be applied), so that it
    /// can be sent to followers. Compaction is separate: see `compact(upTo:)`. Without an explicit
    /// `confState` the snapshot records the latest one given to `setConfState`, which is right
    /// when snapshotting at the applied index.
    @discardableResult
    public func createSnapshot(
        at index: UInt64,
        confState: ConfState? = nil,
        data: [UInt8]
    ) throws(RaftStorageError) -> Snapshot {
        guard index > currentSnapshot.metadata.index else { throw .snapshotOutOfDate }
        // Entries below the compaction point are gone, so their term is unknown.
        guard index >= dummyIndex else { throw .compacted }
        precondition(index <= lastIndexValue, "storage: snapshot index \(index) > last index \(lastIndexValue)")
        var metadata = SnapshotMetadata(index: index, term: entries[Int(index - dummyIndex)].term)
        metadata.confState = confState ?? self.confState
        currentSnapshot = Snapshot(metadata: metadata, data: data)
        return currentSnapshot
    }

    /// Discards every entry up to and including `index`; the entry at `index` stays as the dummy.
    public func compact(upTo index: UInt64) throws(RaftStorageError) {
        guard index > dummyIndex else { throw .compacted }
        precondition(index <= lastIndexValue, "storage: compact \(index) beyond last index \(lastIndexValue)")
        let removeCount = Int(index - dummyIndex)
        let kept = entries[removeCount]
        entries.removeFirst(removeCount)
        entries[0] = Entry(term: kept.term, index: kept.index)
    }

    /// Appends entries, replacing any existing suffix they conflict with. Entries at or below the
    /// compaction point are skipped.
    public func append(_ newEntries: [Entry]) {
        guard let first = newEntries.first else { return }
        let last = newEntries[newEntries.count - 1].index
        if last <= dummyIndex { return }
        var incoming = newEntries[...]
        if first.index <= dummyIndex { incoming = newEntries[Int(dummyIndex + 1 - first.index)...] }
        let firstIncoming = incoming[incoming.startIndex].index
        precondition(
            firstIncoming <= lastIndexValue + 1,
            "storage: missing log entries [last: \(lastIndexValue), append at: \(firstIncoming)]"
        )
        let keep = Int(firstIncoming - dummyIndex)
        if keep < entries.count { entries.removeSubrange(keep...) }
        entries.append(contentsOf: incoming)
    }
}

/// The longest prefix of `entries` within `maxBytes`, but never empty when `entries` is not.
func limitSize(_ entries: ArraySlice<Entry>, maxBytes: Int) -> [Entry] {
    guard !entries.isEmpty else { return [] }
    if maxBytes == Int.max { return Array(entries) }
    var total = 0
    var end = entries.startIndex
    while end < entries.endIndex {
        total += entries[end].sizeBytes
        if total > maxBytes && end > entries.startIndex { break }
        end += 1
    }
    return Array(entries[entries.startIndex..<end])
}
