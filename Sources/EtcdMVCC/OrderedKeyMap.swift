/// A map from byte-string keys to values, ordered by ``compareBytes(_:_:)``, that stays cheap
/// with millions of keys (etcd keeps its key index in a B-tree for the same reason).
///
/// Entries live in a sorted array of sorted chunks of at most ``maxChunkCount`` entries. A lookup
/// is two binary searches (chunk by first key, then inside the chunk), an insertion shifts at most
/// one chunk, and walking a range touches only the chunks it covers, so reading `k` keys costs
/// O(log n + k). Keys are removed only in bulk (compaction), which repacks the chunks.
struct OrderedKeyMap<Value> {
    private struct Chunk {
        var keys: [[UInt8]]
        var values: [Value]
    }

    /// Chunks split when they grow past this; repacking fills them half way to leave room.
    static var maxChunkCount: Int { 256 }

    // Invariant: no chunk is empty, keys ascend within and across chunks.
    private var chunks: [Chunk] = []
    /// The number of keys.
    private(set) var count = 0

    init() {}

    /// The value for `key`, if present.
    subscript(key: [UInt8]) -> Value? {
        guard let (chunk, slot) = find(key) else { return nil }
        return chunks[chunk].values[slot]
    }

    /// Runs `body` on the value for `key` in place, inserting `makeValue()` first when absent.
    mutating func update<Result>(
        _ key: [UInt8],
        insertingIfAbsent makeValue: () -> Value,
        _ body: (inout Value) -> Result
    ) -> Result {
        if chunks.isEmpty {
            chunks.append(Chunk(keys: [key], values: [makeValue()]))
            count = 1
            return body(&chunks[0].values[0])
        }
        let chunk = chunkIndex(for: key)
        let (slot, found) = slotIndex(of: key, in: chunk)
        if found {
            return body(&chunks[chunk].values[slot])
        }
        chunks[chunk].keys.insert(key, at: slot)
        chunks[chunk].values.insert(makeValue(), at: slot)
        count += 1
        let result = body(&chunks[chunk].values[slot])
        if chunks[chunk].keys.count > Self.maxChunkCount {
            split(chunk)
        }
        return result
    }

    /// Runs `body` on the value for `key` in place if the key is present; returns nil otherwise.
    mutating func modify<Result>(_ key: [UInt8], _ body: (inout Value) -> Result) -> Result? {
        guard let (chunk, slot) = find(key) else { return nil }
        return body(&chunks[chunk].values[slot])
    }

    /// Calls `body` for each entry with a key at or after `start`, ascending, until it returns false.
    func forEach(from start: [UInt8], _ body: (_ key: [UInt8], _ value: Value) -> Bool) {
        guard !chunks.isEmpty else { return }
        var chunk = chunkIndex(for: start)
        var slot = slotIndex(of: start, in: chunk).slot
        while chunk < chunks.count {
            let keys = chunks[chunk].keys
            while slot < keys.count {
                guard body(keys[slot], chunks[chunk].values[slot]) else { return }
                slot += 1
            }
            chunk += 1
            slot = 0
        }
    }

    /// Updates every value in key order and drops the entries for which `body` returns false,
    /// then repacks the chunks. O(n), like the compaction that calls it.
    mutating func updateAll(_ body: (_ key: [UInt8], _ value: inout Value) -> Bool) {
        var packed: [Chunk] = []
        var current = Chunk(keys: [], values: [])
        let target = Self.maxChunkCount / 2
        var kept = 0
        for index in chunks.indices {
            for slot in chunks[index].keys.indices {
                let key = chunks[index].keys[slot]
                if body(key, &chunks[index].values[slot]) {
                    current.keys.append(key)
                    current.values.append(chunks[index].values[slot])
                    kept += 1
                    if current.keys.count == target {
                        packed.append(current)
                        current = Chunk(keys: [], values: [])
                    }
                }
            }
        }
        if !current.keys.isEmpty {
            packed.append(current)
        }
        chunks = packed
        count = kept
    }

    /// Removes everything.
    mutating func removeAll() {
        chunks = []
        count = 0
    }

    // MARK: Searching

    private func find(_ key: [UInt8]) -> (chunk: Int, slot: Int)? {
        guard !chunks.isEmpty else { return nil }
        let chunk = chunkIndex(for: key)
        let (slot, found) = slotIndex(of: key, in: chunk)
        return found ? (chunk, slot) : nil
    }

    /// The last chunk whose first key is at or before `key` (or the first chunk): where `key`
    /// is, or would be inserted. Requires at least one chunk.
    private func chunkIndex(for key: [UInt8]) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let middle = (low + high) / 2
            if compareBytes(chunks[middle].keys[0], key) <= 0 {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return max(low - 1, 0)
    }

    /// The first slot in `chunk` whose key is at or after `key`, and whether it equals `key`.
    private func slotIndex(of key: [UInt8], in chunk: Int) -> (slot: Int, found: Bool) {
        let keys = chunks[chunk].keys
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if compareBytes(keys[middle], key) < 0 {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return (low, low < keys.count && keys[low] == key)
    }

    private mutating func split(_ chunk: Int) {
        let half = chunks[chunk].keys.count / 2
        let upper = Chunk(keys: Array(chunks[chunk].keys[half...]), values: Array(chunks[chunk].values[half...]))
        chunks[chunk].keys.removeSubrange(half...)
        chunks[chunk].values.removeSubrange(half...)
        chunks.insert(upper, at: chunk + 1)
    }
}
