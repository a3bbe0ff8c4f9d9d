import Synchronization

/// Records a history from concurrent clients for ``checkLinearizable(_:model:timeout:stepLimit:)``.
///
/// Call ``begin(client:input:)`` right before sending a request and ``end(_:output:)`` as soon
/// as its response arrives. A request that failed in a way that leaves its effect unknown (a
/// timeout, a lost connection) ends with ``endUnknown(_:)``; one that is still outstanding
/// when the history is taken counts as unknown too. A request that certainly had no effect
/// (refused before it reached the cluster) should be ``abandon(_:)``ed.
public final class HistoryRecorder<Input: Sendable, Output: Sendable>: Sendable {
    /// A request in flight.
    public struct Call: Sendable {
        fileprivate let id: Int
    }

    private struct Pending {
        var clientID: Int
        var input: Input
        var callTime: Int64
    }

    private struct Book {
        var nextID = 0
        var pending: [Int: Pending] = [:]
        var finished: [HistoryOperation<Input, Output>] = []
    }

    private let origin: ContinuousClock.Instant
    private let book = Mutex(Book())

    public init() { origin = ContinuousClock.now }

    /// Nanoseconds since the recorder was made.
    public func now() -> Int64 {
        let (seconds, attoseconds) = (ContinuousClock.now - origin).components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    public func begin(client: Int, input: Input) -> Call {
        let callTime = now()
        return book.withLock { book in
            let id = book.nextID
            book.nextID += 1
            book.pending[id] = Pending(clientID: client, input: input, callTime: callTime)
            return Call(id: id)
        }
    }

    public func end(_ call: Call, output: Output) {
        let returnTime = now()
        book.withLock { book in
            guard let pending = book.pending.removeValue(forKey: call.id) else { return }
            book.finished.append(
                HistoryOperation(
                    clientID: pending.clientID, input: pending.input, call: pending.callTime, output: output,
                    return: max(returnTime, pending.callTime)))
        }
    }

    public func endUnknown(_ call: Call) {
        book.withLock { book in
            guard let pending = book.pending.removeValue(forKey: call.id) else { return }
            book.finished.append(.unknown(clientID: pending.clientID, input: pending.input, call: pending.callTime))
        }
    }

    /// Forgets a request that certainly never took effect.
    public func abandon(_ call: Call) {
        _ = book.withLock { $0.pending.removeValue(forKey: call.id) }
    }

    /// Every operation so far, by call time; those still in flight have unknown outcomes.
    public func history() -> [HistoryOperation<Input, Output>] {
        book.withLock { book in
            let outstanding = book.pending.sorted { $0.key < $1.key }.map { _, pending in
                HistoryOperation<Input, Output>.unknown(
                    clientID: pending.clientID, input: pending.input, call: pending.callTime)
            }
            return (book.finished + outstanding).sorted { $0.callTime < $1.callTime }
        }
    }
}
