/// Where every watcher stands and which events it gets next: etcd's watchable-store bookkeeping
/// (its synced and unsynced watcher groups), without I/O, threads or clocks, so that it can be
/// tested exhaustively and driven by one owner.
///
/// A *synced* watcher has seen everything up to the current revision: each new revision's events
/// are matched to it through a ``WatcherIndex`` as they are applied (``publish(revision:events:)``),
/// without looking at watchers whose range does not contain the key. An *unsynced* watcher
/// starts in the past, or fell behind because its consumer stopped reading (``demote(_:nextRevision:)``);
/// it is served from the store's history in whole revisions (``catchUp(events:through:)``) until it
/// reaches the current revision and joins the synced group. The owner must run `catchUp` with
/// history read under the same lock that orders `publish` calls, so no revision falls between.
///
/// The guarantees follow from the bookkeeping: a watcher's revisions only increase (each watcher
/// has one next revision and is in exactly one group), no revision is skipped (a watcher leaves
/// the unsynced group only when its history reaches the current revision) and none is sent twice
/// (delivery advances the next revision past it).
public struct WatchGroups<ID: Hashable> {
    /// One watcher's registration.
    public struct Watch: Hashable {
        public var range: KeyRange
        /// The first revision not yet handed to this watcher. Stored for unsynced watchers and
        /// for those waiting for a future revision; a synced watcher's is the revision after the
        /// current one, whatever is stored (``WatchGroups/watch(_:)`` reports the real one).
        public var nextRevision: Int64
        /// etcd's NOPUT and NODELETE filters.
        public var skipsPuts: Bool
        public var skipsDeletes: Bool

        public init(range: KeyRange, nextRevision: Int64, skipsPuts: Bool = false, skipsDeletes: Bool = false) {
            self.range = range
            self.nextRevision = nextRevision
            self.skipsPuts = skipsPuts
            self.skipsDeletes = skipsDeletes
        }

        func wants(_ event: MVCCEvent) -> Bool {
            event.kv.modRevision >= nextRevision && range.contains(event.kv.key)
                && !(event.kind == .put ? skipsPuts : skipsDeletes)
        }
    }

    /// Events for one watcher, in revision order, whole revisions only.
    public struct Delivery: Hashable {
        public var watcher: ID
        public var events: [MVCCEvent]
    }

    private var syncedIndex = WatcherIndex<ID>()
    private var watches: [ID: Watch] = [:]
    private var unsynced: Set<ID> = []
    /// The newest revision published.
    public private(set) var currentRevision: Int64

    public init(currentRevision: Int64) {
        self.currentRevision = currentRevision
    }

    public var count: Int { watches.count }
    public var unsyncedCount: Int { unsynced.count }

    public func watch(_ id: ID) -> Watch? {
        guard var watch = watches[id] else { return nil }
        if !unsynced.contains(id) { watch.nextRevision = max(watch.nextRevision, currentRevision + 1) }
        return watch
    }

    public func isSynced(_ id: ID) -> Bool { watches[id] != nil && !unsynced.contains(id) }

    /// Registers a watcher from `startRevision` (0: from the next revision, as etcd's default).
    /// A start at or before the current revision needs history first (unsynced); a future start
    /// waits in the synced group until its revision comes. False when the ID is taken or the
    /// range is empty.
    public mutating func add(
        _ id: ID, range: KeyRange, startRevision: Int64, skipsPuts: Bool = false, skipsDeletes: Bool = false
    ) -> Bool {
        guard watches[id] == nil else { return false }
        let next = startRevision <= 0 ? currentRevision + 1 : startRevision
        let watch = Watch(range: range, nextRevision: next, skipsPuts: skipsPuts, skipsDeletes: skipsDeletes)
        if next > currentRevision {
            guard syncedIndex.insert(id, for: range) else { return false }
        } else {
            if case .range(let start, let end) = range, compareBytes(start, end) >= 0 { return false }
            unsynced.insert(id)
        }
        watches[id] = watch
        return true
    }

    /// Unregisters a watcher; false if unknown.
    @discardableResult
    public mutating func remove(_ id: ID) -> Bool {
        guard let watch = watches.removeValue(forKey: id) else { return false }
        if unsynced.remove(id) == nil { syncedIndex.remove(id, for: watch.range) }
        return true
    }

    /// The events of one newly applied revision (all of them, in order). Returns what each
    /// synced watcher must be sent; unsynced watchers get these later from history.
    public mutating func publish(revision: Int64, events: [MVCCEvent]) -> [Delivery] {
        precondition(revision > currentRevision, "publish: revision \(revision) is not after \(currentRevision)")
        // A synced watcher's next revision is implicitly the one after the current revision (see
        // `watch(_:)`), so nothing is stored per watcher here: this runs for every write.
        defer { currentRevision = revision }
        if events.count == 1 {
            // One change (a plain put or delete): every matching watcher shares the same array.
            let event = events[0]
            precondition(event.kv.modRevision == revision, "publish: event at \(event.kv.modRevision) in revision \(revision)")
            var deliveries: [Delivery] = []
            syncedIndex.forEachWatcher(of: event.kv.key) { id in
                guard let watch = watches[id], watch.wants(event) else { return }
                deliveries.append(Delivery(watcher: id, events: events))
            }
            return deliveries
        }
        var order: [ID] = []
        var matched: [ID: [MVCCEvent]] = [:]
        for event in events {
            precondition(event.kv.modRevision == revision, "publish: event at \(event.kv.modRevision) in revision \(revision)")
            syncedIndex.forEachWatcher(of: event.kv.key) { id in
                guard let watch = watches[id], watch.wants(event) else { return }
                if matched[id] == nil { order.append(id) }
                matched[id, default: []].append(event)
            }
        }
        return order.map { id in Delivery(watcher: id, events: matched[id] ?? []) }
    }

    /// The earliest revision an unsynced watcher needs, or nil when all are synced: where the
    /// owner's next history read starts.
    public var catchUpStart: Int64? { catchUpStart(where: { _ in true }) }

    /// The earliest revision needed by an unsynced watcher that `isReady` accepts (e.g. whose
    /// consumer has room), or nil when there is none.
    public func catchUpStart(where isReady: (ID) -> Bool) -> Int64? {
        var earliest: Int64?
        for id in unsynced where isReady(id) {
            guard let next = watches[id]?.nextRevision else { continue }
            if earliest.map({ next < $0 }) ?? true { earliest = next }
        }
        return earliest
    }

    /// Hands history to unsynced watchers: `events` must be every event with a revision from
    /// `from` through `through` (whole revisions, `through` at most the current revision;
    /// `from` defaults to ``catchUpStart``). Each unsynced watcher that `isReady` accepts and
    /// whose next revision lies in that span gets the events at or after its next revision that
    /// match; a watcher whose history now reaches the current revision joins the synced group.
    /// Watchers needing revisions before `from` (added or demoted while the owner read) wait for
    /// a later round, so none is ever handed history with a hole in it.
    public mutating func catchUp(
        events: [MVCCEvent], from: Int64? = nil, through: Int64, where isReady: (ID) -> Bool = { _ in true }
    ) -> [Delivery] {
        precondition(through <= currentRevision, "catchUp: through \(through) is past the current revision \(currentRevision)")
        let from = from ?? catchUpStart ?? through + 1
        let history = events.filter { $0.kv.modRevision <= through }
        // Single-key watchers (the common case) look their key up instead of scanning the batch,
        // so a round costs about events + watchers, not their product.
        var historyByKey: [[UInt8]: [MVCCEvent]] = [:]
        for event in history { historyByKey[event.kv.key, default: []].append(event) }
        var deliveries: [Delivery] = []
        for id in unsynced where isReady(id) {
            guard var watch = watches[id], watch.nextRevision >= from else { continue }
            if watch.nextRevision <= through {
                let candidates: [MVCCEvent]
                if case .key(let key) = watch.range {
                    candidates = historyByKey[key] ?? []
                } else {
                    candidates = history
                }
                let wanted = candidates.filter { watch.wants($0) }
                if !wanted.isEmpty { deliveries.append(Delivery(watcher: id, events: wanted)) }
                watch.nextRevision = through + 1
                watches[id] = watch
            }
            if watch.nextRevision > currentRevision {
                unsynced.remove(id)
                syncedIndex.insert(id, for: watch.range)
            }
        }
        return deliveries
    }

    /// Sends a watcher back to catch-up from `nextRevision` (its consumer could not take what it
    /// was given: etcd's victims). Its history is then read from the store at its own pace.
    public mutating func demote(_ id: ID, nextRevision: Int64) {
        guard var watch = watches[id] else { return }
        watch.nextRevision = nextRevision
        watches[id] = watch
        if nextRevision > currentRevision {
            // Nothing to catch up (a watcher waiting for a future revision stays where it is).
            if unsynced.remove(id) != nil { syncedIndex.insert(id, for: watch.range) }
        } else if unsynced.insert(id).inserted {
            syncedIndex.remove(id, for: watch.range)
        }
    }

    /// The store was replaced by a newer one (a Raft snapshot installed from the leader) at
    /// `revision`: every watcher that was synced has been handed everything up to the old
    /// current revision and now catches up from the new store, as etcd moves its synced
    /// watchers to unsynced after a restore. Those whose history is gone from it are found by
    /// ``removeCompacted(below:)`` then.
    public mutating func restore(currentRevision revision: Int64) {
        let next = currentRevision + 1
        for id in Array(watches.keys) where !unsynced.contains(id) {
            guard var watch = watches[id], watch.nextRevision <= revision else { continue }
            watch.nextRevision = max(watch.nextRevision, next)
            watches[id] = watch
            unsynced.insert(id)
            syncedIndex.remove(id, for: watch.range)
        }
        currentRevision = max(currentRevision, revision)
    }

    /// Removes and returns the unsynced watchers whose next revision is below `compactRevision`:
    /// their history is gone, so they are cancelled with that compact revision (as etcd does).
    public mutating func removeCompacted(below compactRevision: Int64) -> [ID] {
        let gone = unsynced.filter { (watches[$0]?.nextRevision ?? 0) < compactRevision }
        for id in gone { remove(id) }
        return Array(gone)
    }
}
