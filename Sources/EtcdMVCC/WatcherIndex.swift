/// Finds the watchers interested in a changed key without looking at the others (etcd's
/// `watcherGroup`: a map for single-key watchers, an interval tree for ranges).
///
/// Single keys live in a dictionary. Ranges (`[start, end)` and from-key ranges, which have no
/// end) live in a treap ordered by start and augmented with the largest end in each subtree, so
/// a stabbing query visits only subtrees that can contain the key: O(log n + matches) expected.
/// Priorities come from a fixed-seed generator, so the shape (and any failure) is reproducible.
///
/// Not `Sendable`: one owner (the watch hub, behind its lock) uses it.
public struct WatcherIndex<Watcher: Hashable> {
    private var singleKeys: [[UInt8]: Set<Watcher>] = [:]
    private var ranges = IntervalTreap<Watcher>()

    public init() {}

    /// Watchers registered, counting one per registration.
    public private(set) var count = 0

    /// Registers `watcher` for `range`. Empty ranges (`end <= start`) can never match and are
    /// refused with `false`, as etcd refuses to create such a watch.
    @discardableResult
    public mutating func insert(_ watcher: Watcher, for range: KeyRange) -> Bool {
        switch range {
        case .key(let key):
            guard singleKeys[key, default: []].insert(watcher).inserted else { return false }
        case .fromKey(let start):
            guard ranges.insert(watcher, start: start, end: nil) else { return false }
        case .range(let start, let end):
            guard compareBytes(start, end) < 0, ranges.insert(watcher, start: start, end: end) else { return false }
        }
        count += 1
        return true
    }

    /// Unregisters `watcher` from `range`; false if it was not registered there.
    @discardableResult
    public mutating func remove(_ watcher: Watcher, for range: KeyRange) -> Bool {
        let removed: Bool
        switch range {
        case .key(let key):
            removed = singleKeys[key]?.remove(watcher) != nil
            if singleKeys[key]?.isEmpty == true { singleKeys[key] = nil }
        case .fromKey(let start):
            removed = ranges.remove(watcher, start: start, end: nil)
        case .range(let start, let end):
            removed = ranges.remove(watcher, start: start, end: end)
        }
        if removed { count -= 1 }
        return removed
    }

    /// Calls `body` once for every registration whose range contains `key`.
    public func forEachWatcher(of key: [UInt8], _ body: (Watcher) -> Void) {
        if let watchers = singleKeys[key] {
            for watcher in watchers { body(watcher) }
        }
        ranges.stab(key, body)
    }
}

/// A treap of half-open byte-string intervals (a nil end is unbounded), each node holding the
/// watchers of one exact interval and the largest end in its subtree.
struct IntervalTreap<Value: Hashable> {
    final class Node {
        let start: [UInt8]
        let end: [UInt8]?
        var values: Set<Value>
        let priority: UInt64
        var left: Node?
        var right: Node?
        /// The largest end in this subtree (nil = unbounded).
        var maxEnd: [UInt8]?

        init(start: [UInt8], end: [UInt8]?, value: Value, priority: UInt64) {
            self.start = start
            self.end = end
            self.values = [value]
            self.priority = priority
            self.maxEnd = end
        }

        func update() {
            var largest = end
            for child in [left, right] {
                guard let child else { continue }
                largest = IntervalTreap.maxOfEnds(largest, child.maxEnd)
            }
            maxEnd = largest
        }
    }

    private var root: Node?
    /// xorshift64 state for priorities: fixed seed, so the tree's shape is reproducible.
    private var priorityState: UInt64 = 0x9E37_79B9_7F4A_7C15

    private mutating func nextPriority() -> UInt64 {
        priorityState ^= priorityState << 13
        priorityState ^= priorityState >> 7
        priorityState ^= priorityState << 17
        return priorityState
    }

    /// Orders nodes by start, then end (nil last).
    static func compare(_ start: [UInt8], _ end: [UInt8]?, with node: Node) -> Int {
        let byStart = compareBytes(start, node.start)
        if byStart != 0 { return byStart }
        switch (end, node.end) {
        case (nil, nil): return 0
        case (nil, _): return 1
        case (_, nil): return -1
        case (let a?, let b?): return compareBytes(a, b)
        }
    }

    static func maxOfEnds(_ a: [UInt8]?, _ b: [UInt8]?) -> [UInt8]? {
        guard let a, let b else { return nil }
        return compareBytes(a, b) >= 0 ? a : b
    }

    mutating func insert(_ value: Value, start: [UInt8], end: [UInt8]?) -> Bool {
        var inserted = false
        let priority = nextPriority()
        root = Self.insert(value, start: start, end: end, priority: priority, into: root, inserted: &inserted)
        return inserted
    }

    private static func insert(
        _ value: Value, start: [UInt8], end: [UInt8]?, priority: UInt64, into node: Node?, inserted: inout Bool
    ) -> Node {
        guard let node else {
            inserted = true
            return Node(start: start, end: end, value: value, priority: priority)
        }
        let order = compare(start, end, with: node)
        if order == 0 {
            inserted = node.values.insert(value).inserted
            return node
        }
        if order < 0 {
            node.left = insert(value, start: start, end: end, priority: priority, into: node.left, inserted: &inserted)
            if let left = node.left, left.priority > node.priority { return rotateRight(node) }
        } else {
            node.right = insert(value, start: start, end: end, priority: priority, into: node.right, inserted: &inserted)
            if let right = node.right, right.priority > node.priority { return rotateLeft(node) }
        }
        node.update()
        return node
    }

    mutating func remove(_ value: Value, start: [UInt8], end: [UInt8]?) -> Bool {
        var removed = false
        root = Self.remove(value, start: start, end: end, from: root, removed: &removed)
        return removed
    }

    private static func remove(_ value: Value, start: [UInt8], end: [UInt8]?, from node: Node?, removed: inout Bool) -> Node? {
        guard let node else { return nil }
        let order = compare(start, end, with: node)
        if order < 0 {
            node.left = remove(value, start: start, end: end, from: node.left, removed: &removed)
        } else if order > 0 {
            node.right = remove(value, start: start, end: end, from: node.right, removed: &removed)
        } else {
            removed = node.values.remove(value) != nil
            if node.values.isEmpty { return merge(node.left, node.right) }
        }
        node.update()
        return node
    }

    /// Joins two treaps where every node of `left` orders before every node of `right`.
    private static func merge(_ left: Node?, _ right: Node?) -> Node? {
        guard let left else { return right }
        guard let right else { return left }
        if left.priority > right.priority {
            left.right = merge(left.right, right)
            left.update()
            return left
        }
        right.left = merge(left, right.left)
        right.update()
        return right
    }

    private static func rotateRight(_ node: Node) -> Node {
        guard let pivot = node.left else { return node }
        node.left = pivot.right
        node.update()
        pivot.right = node
        pivot.update()
        return pivot
    }

    private static func rotateLeft(_ node: Node) -> Node {
        guard let pivot = node.right else { return node }
        node.right = pivot.left
        node.update()
        pivot.left = node
        pivot.update()
        return pivot
    }

    /// Calls `body` for every value of every interval containing `key`.
    func stab(_ key: [UInt8], _ body: (Value) -> Void) {
        Self.stab(key, root, body)
    }

    private static func stab(_ key: [UInt8], _ node: Node?, _ body: (Value) -> Void) {
        guard let node else { return }
        // Nothing below ends after the key: no interval here can contain it.
        if let maxEnd = node.maxEnd, compareBytes(key, maxEnd) >= 0 { return }
        stab(key, node.left, body)
        // Nodes to the right start at or after this one; if this one starts after the key, so do they.
        guard compareBytes(node.start, key) <= 0 else { return }
        if node.end.map({ compareBytes(key, $0) < 0 }) ?? true {
            for value in node.values { body(value) }
        }
        stab(key, node.right, body)
    }
}
