/// Checks client writes and reads against a linearizable register per key.
///
/// Writes are totally ordered by their log index. A write that a client never saw acknowledged
/// stays pending and may or may not take effect. For every completed read r of key k that
/// observed write w (index 0 = the initial value):
/// - w was invoked before r completed;
/// - w is at or after every write to k that completed before r was invoked;
/// - w is at or after what any read of k that completed before r was invoked observed.
/// Writes get the same treatment: a write invoked after another completed lands at a higher
/// index. All bounds are taken when an operation is invoked, so each check is O(1).
struct LinearizabilityChecker {
    struct Write {
        var key: Int
        var invokedAt: UInt64
        var completedAt: UInt64?
        /// The log index once some node applied it.
        var index: UInt64?
        /// The highest index of any write completed when this one was invoked.
        var lowerBound: UInt64
    }

    struct Read {
        var key: Int
        var invokedAt: UInt64
        /// The lowest write index this read may observe.
        var lowerBound: UInt64
    }

    private(set) var writes: [UInt64: Write] = [:]
    private(set) var reads: [UInt64: Read] = [:]
    /// Per key: the highest index of a completed write, and of a write observed by a completed read.
    private var completedWriteIndex = Array(repeating: UInt64(0), count: KVStateMachine.keyCount)
    private var observedReadIndex = Array(repeating: UInt64(0), count: KVStateMachine.keyCount)
    /// Over all keys: the highest index of a completed write.
    private var completedWriteIndexAnyKey: UInt64 = 0
    private(set) var completedWrites = 0
    private(set) var completedReads = 0

    mutating func invokeWrite(id: UInt64, key: Int, step: UInt64) {
        precondition(writes[id] == nil, "sim: write \(id) invoked twice")
        writes[id] = Write(key: key, invokedAt: step, lowerBound: completedWriteIndexAnyKey)
    }

    /// The proposal was refused outright: it never reached any log.
    mutating func abandonWrite(id: UInt64) { writes[id] = nil }

    /// Some node applied write `id` at `index` for the first time.
    mutating func writeCommitted(id: UInt64, index: UInt64) throws(SimulationFailure) {
        guard var write = writes[id] else {
            throw SimulationFailure(check: "linearizability", detail: "write \(id) applied at \(index) was never invoked")
        }
        if let earlier = write.index {
            throw SimulationFailure(
                check: "linearizability", detail: "write \(id) applied twice, at \(earlier) and at \(index)")
        }
        guard index > write.lowerBound else {
            throw SimulationFailure(
                check: "linearizability",
                detail: "write \(id) landed at \(index), but a write at \(write.lowerBound) completed before it was invoked")
        }
        write.index = index
        writes[id] = write
    }

    /// The client of write `id` saw it acknowledged at `step`.
    mutating func completeWrite(id: UInt64, step: UInt64) throws(SimulationFailure) {
        guard var write = writes[id], let index = write.index else {
            throw SimulationFailure(check: "linearizability", detail: "write \(id) acknowledged before it was applied")
        }
        guard write.completedAt == nil else { return }
        write.completedAt = step
        writes[id] = write
        completedWrites += 1
        completedWriteIndex[write.key] = max(completedWriteIndex[write.key], index)
        completedWriteIndexAnyKey = max(completedWriteIndexAnyKey, index)
    }

    mutating func invokeRead(id: UInt64, key: Int, step: UInt64) {
        precondition(reads[id] == nil, "sim: read \(id) invoked twice")
        reads[id] = Read(
            key: key, invokedAt: step, lowerBound: max(completedWriteIndex[key], observedReadIndex[key]))
    }

    mutating func abandonRead(id: UInt64) { reads[id] = nil }

    /// Read `id` returned the value of write `observedWrite` (0 = initial) from index `observedIndex`.
    mutating func completeRead(id: UInt64, observedWrite: UInt64, observedIndex: UInt64, step: UInt64, node: String)
        throws(SimulationFailure)
    {
        guard let read = reads.removeValue(forKey: id) else {
            throw SimulationFailure(check: "linearizability", detail: "read \(id) completed but was never invoked")
        }
        if observedWrite != 0 {
            guard let write = writes[observedWrite], write.key == read.key, write.invokedAt < step,
                write.index == observedIndex
            else {
                throw SimulationFailure(
                    check: "linearizability",
                    detail: "read \(id) of key \(read.key) on node \(node) observed write \(observedWrite) at "
                        + "\(observedIndex), which is not a write of that key invoked before the read completed")
            }
        } else if observedIndex != 0 {
            throw SimulationFailure(
                check: "linearizability", detail: "read \(id) observed the initial value with index \(observedIndex)")
        }
        guard observedIndex >= read.lowerBound else {
            throw SimulationFailure(
                check: "linearizability",
                detail: "stale read \(id) of key \(read.key) on node \(node) (invoked at step \(read.invokedAt)): "
                    + "observed the write at index \(observedIndex), but a write at \(read.lowerBound) had completed "
                    + "or been observed by a completed read before it was invoked")
        }
        observedReadIndex[read.key] = max(observedReadIndex[read.key], observedIndex)
        completedReads += 1
    }
}
