import DequeModule
import EtcdRaft
import Synchronization

/// The messages waiting for one peer: bounded in count and bytes, filled by the Raft loop through
/// ``offer(_:)`` (which never waits) and drained by the peer's writer through ``take(maxMessages:maxBodyBytes:)``.
///
/// When full, new messages are dropped rather than the caller held: Raft retransmits what is
/// lost, and a stalled Raft loop would cost the whole cluster its heartbeats. etcd's rafthttp does
/// the same with its 4,096-slot stream buffer (peer.go `send`).
final class PeerOutbox: Sendable {
    /// What became of an offered batch.
    struct OfferResult: Hashable, Sendable {
        var queued = 0
        var dropped = 0
        /// True when this offer dropped the first message since the last accepted one: the
        /// transport reports the peer unreachable once per such burst.
        var burstStarted = false
    }

    /// One message and its encoded size (`PeerTransport.encodedSize`).
    private struct Item {
        var message: Message
        var bytes: Int
    }

    private struct State {
        var items: Deque<Item> = []
        var bytes = 0
        var dropping = false
        var closed = false
        /// Set by `wake` when nobody waited yet, so that the next `take` returns at once.
        var woken = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    let messageLimit: Int
    let byteLimit: Int
    private let state = Mutex(State())

    init(messageLimit: Int, byteLimit: Int) {
        self.messageLimit = messageLimit
        self.byteLimit = byteLimit
    }

    /// Messages and bytes waiting now.
    var depth: (messages: Int, bytes: Int) { state.withLock { ($0.items.count, $0.bytes) } }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues what fits, in order, and drops the rest; never waits.
    func offer(_ messages: [(message: Message, bytes: Int)]) -> OfferResult {
        var result = OfferResult()
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            for (message, bytes) in messages {
                guard !state.closed, state.items.count < messageLimit, state.bytes + bytes <= byteLimit else {
                    result.dropped += 1
                    if !state.dropping {
                        state.dropping = true
                        result.burstStarted = true
                    }
                    continue
                }
                state.items.append(Item(message: message, bytes: bytes))
                state.bytes += bytes
                state.dropping = false
                result.queued += 1
            }
            guard result.queued > 0 else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
        return result
    }

    /// Everything waiting, up to the bounds of one frame (always at least one message), once
    /// something is; an empty batch when ``wake()`` was called; nil once closed.
    func take(maxMessages: Int, maxBodyBytes: Int) async -> [Message]? {
        while true {
            let taken = state.withLock { state -> [Message]?? in
                if state.closed { return .some(nil) }
                if !state.items.isEmpty { return .some(Self.drain(&state, maxMessages: maxMessages, maxBodyBytes: maxBodyBytes)) }
                if state.woken {
                    state.woken = false
                    return .some([])
                }
                return nil
            }
            if let taken { return taken }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state in
                    if state.closed || !state.items.isEmpty || state.woken { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }

    private static func drain(_ state: inout State, maxMessages: Int, maxBodyBytes: Int) -> [Message] {
        var batch: [Message] = []
        var bodyBytes = 0
        while let next = state.items.first, batch.count < maxMessages {
            // The first message always goes, even alone over the bound: the encoder then
            // refuses it and it is counted, instead of blocking the queue forever.
            guard batch.isEmpty || bodyBytes + next.bytes <= maxBodyBytes else { break }
            state.items.removeFirst()
            state.bytes -= next.bytes
            bodyBytes += next.bytes
            batch.append(next.message)
        }
        return batch
    }

    /// Makes a waiting (or the next) ``take(maxMessages:maxBodyBytes:)`` return an empty batch:
    /// the writer's connection broke and it should notice without waiting for a message.
    func wake() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.woken = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Drops everything waiting and ends the writer's ``take(maxMessages:maxBodyBytes:)``; later
    /// offers are dropped. Returns how many messages were discarded.
    @discardableResult
    func close() -> Int {
        let (waiter, discarded) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Int) in
            state.closed = true
            let discarded = state.items.count
            state.items.removeAll()
            state.bytes = 0
            defer { state.waiter = nil }
            return (state.waiter, discarded)
        }
        waiter?.resume()
        return discarded
    }
}
