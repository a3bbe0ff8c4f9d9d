/// Ready-made models of etcd's key-value API for ``checkLinearizable(_:model:timeout:stepLimit:)``.
///
/// Only linearizable requests belong in a history checked against them: etcd serves
/// serializable reads (`--consistency=s`) from a member's local state, which may be stale.

/// A request of a KV history.
public enum EtcdKVInput: Hashable, Sendable, CustomStringConvertible {
    case put(key: String, value: String)
    case get(key: String)
    case delete(key: String)

    public var key: String {
        switch self {
        case .put(let key, _), .get(let key), .delete(let key): return key
        }
    }

    public var description: String {
        switch self {
        case .put(let key, let value): return "put(\(key), \(value))"
        case .get(let key): return "get(\(key))"
        case .delete(let key): return "delete(\(key))"
        }
    }
}

/// A response of a KV history. Revisions are optional: ``EtcdKVModel`` ignores them, and
/// ``EtcdRevisionKVModel`` checks those that are given.
public enum EtcdKVOutput: Hashable, Sendable, CustomStringConvertible {
    /// `revision` is the response header's revision, the one the put created.
    case put(revision: Int64? = nil)
    /// `value` is nil if the key is absent; `modRevision` is the key's mod_revision (0 when
    /// absent) and `revision` the header's revision, the store's current one.
    case get(value: String?, modRevision: Int64? = nil, revision: Int64? = nil)
    /// `deleted` is the response's deleted count; `revision` the header's revision (a new one
    /// only if something was deleted).
    case delete(deleted: Int64? = nil, revision: Int64? = nil)

    public var description: String {
        switch self {
        case .put(let revision):
            return "ok" + Self.describe("rev", revision)
        case .get(let value, let modRevision, let revision):
            return (value ?? "absent") + Self.describe("mod", modRevision) + Self.describe("rev", revision)
        case .delete(let deleted, let revision):
            return "deleted " + (deleted.map(String.init) ?? "?") + Self.describe("rev", revision)
        }
    }

    private static func describe(_ name: String, _ value: Int64?) -> String {
        value.map { " \(name) \($0)" } ?? ""
    }
}

extension [HistoryOperation<EtcdKVInput, EtcdKVOutput>] {
    /// The history split by key, each key's operations in their original order.
    public func partitionedByKey() -> [[HistoryOperation<EtcdKVInput, EtcdKVOutput>]] {
        var positions: [String: Int] = [:]
        var parts: [[HistoryOperation<EtcdKVInput, EtcdKVOutput>]] = []
        for operation in self {
            if let position = positions[operation.input.key] {
                parts[position].append(operation)
            } else {
                positions[operation.input.key] = parts.count
                parts.append([operation])
            }
        }
        return parts
    }
}

/// Every key is a linearizable register, checked key by key; revisions are not checked.
///
/// A put sets the key, a delete removes it (a delete's `deleted` count, if given, must be 1
/// when the key was present and 0 otherwise), a get must see the current value. An operation
/// with an unknown outcome is applied (see ``HistoryOperation/unknown(clientID:input:call:)``).
public struct EtcdKVModel: LinearizabilityModel {
    public typealias Input = EtcdKVInput
    public typealias Output = EtcdKVOutput

    /// The store before the history, key to value.
    public let initialState: [String: String]

    public init(initial: [String: String] = [:]) { initialState = initial }

    public func step(_ state: [String: String], input: EtcdKVInput, output: EtcdKVOutput?) -> [String: String]? {
        switch (input, output) {
        case (.put(let key, let value), .none), (.put(let key, let value), .put?):
            var next = state
            next[key] = value
            return next
        case (.get, .none):
            return state
        case (.get(let key), .get(let value, _, _)?):
            return state[key] == value ? state : nil
        case (.delete(let key), .none):
            var next = state
            next[key] = nil
            return next
        case (.delete(let key), .delete(let deleted, _)?):
            if let deleted, deleted != (state[key] == nil ? 0 : 1) { return nil }
            var next = state
            next[key] = nil
            return next
        default:
            // A response of another kind than the request.
            return nil
        }
    }

    public func partition(_ history: [HistoryOperation<EtcdKVInput, EtcdKVOutput>])
        -> [[HistoryOperation<EtcdKVInput, EtcdKVOutput>]]
    {
        history.partitionedByKey()
    }

    public func describe(state: [String: String]) -> String {
        state.isEmpty ? "{}" : "{" + state.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "}"
    }
}

/// The whole store with etcd's single revision counter, so it is checked as one part.
///
/// etcd 3.5 (`mvcc/kvstore.go`, `kvstore_txn.go`): every put, and every delete that removes a
/// key, creates the next revision; a delete of an absent key creates none. Response headers
/// carry the store's revision after the request; a key's mod_revision is the revision that
/// last wrote it. Revisions given in outputs must match; those left nil are not checked.
///
/// The one counter ties all keys together, so the history is one part, and every put with an
/// unknown outcome is a candidate for the next revision until a read tells them apart: with
/// more than a few of them the search may run out of its budget. Resolve what reads prove
/// first (``Swift/Array/resolvingObservedUnknownPuts()``), and check large histories with
/// many unknown outcomes key by key with ``EtcdKVModel``. Measured in a debug build: 2,000
/// operations from 8 clients over 10 keys without unknown outcomes take about 0.2-0.3 s.
public struct EtcdRevisionKVModel: LinearizabilityModel {
    public typealias Input = EtcdKVInput
    public typealias Output = EtcdKVOutput

    public struct Entry: Hashable, Sendable {
        public var value: String
        public var modRevision: Int64

        public init(value: String, modRevision: Int64) {
            self.value = value
            self.modRevision = modRevision
        }
    }

    public struct State: Hashable, Sendable {
        /// The store's current revision.
        public var revision: Int64
        public var entries: [String: Entry]

        public init(revision: Int64, entries: [String: Entry]) {
            self.revision = revision
            self.entries = entries
        }
    }

    public let initialState: State

    /// - Parameter revision: the store's revision before the history (a fresh etcd is at 1).
    public init(revision: Int64 = 1, entries: [String: Entry] = [:]) {
        initialState = State(revision: revision, entries: entries)
    }

    public func step(_ state: State, input: EtcdKVInput, output: EtcdKVOutput?) -> State? {
        switch (input, output) {
        case (.put(let key, let value), .none), (.put(let key, let value), .put?):
            var next = state
            next.revision += 1
            next.entries[key] = Entry(value: value, modRevision: next.revision)
            if case .put(let revision?)? = output, revision != next.revision { return nil }
            return next
        case (.get, .none):
            return state
        case (.get(let key), .get(let value, let modRevision, let revision)?):
            let entry = state.entries[key]
            guard entry?.value == value else { return nil }
            if let modRevision, modRevision != (entry?.modRevision ?? 0) { return nil }
            if let revision, revision != state.revision { return nil }
            return state
        case (.delete(let key), .none), (.delete(let key), .delete?):
            var next = state
            let present = state.entries[key] != nil
            if present {
                next.revision += 1
                next.entries[key] = nil
            }
            if case .delete(let deleted, let revision)? = output {
                if let deleted, deleted != (present ? 1 : 0) { return nil }
                if let revision, revision != next.revision { return nil }
            }
            return next
        default:
            return nil
        }
    }

    public func describe(state: State) -> String {
        let entries = state.entries.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.value)@\($0.value.modRevision)" }
        return "rev \(state.revision) {" + entries.joined(separator: ", ") + "}"
    }
}

extension [HistoryOperation<EtcdKVInput, EtcdKVOutput>] {
    /// Resolves puts with unknown outcomes that a read proves took effect, as etcd's robustness
    /// tests patch their histories; only sound if no two puts of a key write the same value.
    ///
    /// If a get of the key returned the put's value, the put took effect before that get
    /// returned, so its return time becomes the earliest such get's; if the get also gave the
    /// key's mod_revision, that was the put's revision, and the put gets it as its response.
    /// Fewer unknown outcomes make a much smaller search, above all for
    /// ``EtcdRevisionKVModel``, where unknown puts all compete for the next revision.
    public func resolvingObservedUnknownPuts() -> [HistoryOperation<EtcdKVInput, EtcdKVOutput>] {
        var observed: [String: [String: PutObservation]] = [:]
        for operation in self {
            guard case .get(let key) = operation.input, case .get(let value?, let modRevision, _)? = operation.output
            else { continue }
            if let earlier = observed[key]?[value], earlier.returnTime <= operation.returnTime { continue }
            observed[key, default: [:]][value] = PutObservation(returnTime: operation.returnTime, modRevision: modRevision)
        }
        return map { operation in
            guard operation.outcomeUnknown, case .put(let key, let value) = operation.input,
                let observation = observed[key]?[value]
            else { return operation }
            return HistoryOperation(
                clientID: operation.clientID, input: operation.input, call: operation.callTime,
                output: observation.modRevision.map { .put(revision: $0) },
                return: Swift.max(operation.callTime, observation.returnTime))
        }
    }
}

/// The earliest get that returned a put's value, for `resolvingObservedUnknownPuts`.
private struct PutObservation {
    var returnTime: Int64
    var modRevision: Int64?
}
