/// What one write did, or would have done, to one key.
enum KeyEffect: Hashable, Sendable, CustomStringConvertible {
    case put(value: String)
    case delete

    var description: String {
        switch self {
        case .put(let value): return "put \(value)"
        case .delete: return "delete"
        }
    }
}

/// One write request of the workload and the keys it changes when it takes effect.
///
/// A txn changes several keys at one revision; a delete that removed nothing changes no key.
struct CrashWrite: Sendable, Hashable, CustomStringConvertible {
    /// A short label for failure messages, e.g. `txn#c3w1n7`.
    var label: String
    var effects: [KeyChange]

    struct KeyChange: Sendable, Hashable {
        var key: String
        var effect: KeyEffect
    }

    var description: String {
        "\(label)[" + effects.map { "\($0.effect) \($0.key)" }.joined(separator: ", ") + "]"
    }
}

/// A key as a range read returned it.
struct ObservedKey: Sendable, Hashable, CustomStringConvertible {
    var value: String
    var modRevision: Int64

    var description: String { "\(value)@\(modRevision)" }
}

/// The crash test's model of the keyspace: what every acknowledged write promised, which writes
/// were in flight when the server died, and the checks a restarted server must pass.
///
/// An acknowledged write is one whose response reached the client. It must survive any crash:
/// after the restart each key shows its newest acknowledged state, with the write's revision as
/// `mod_revision`, unless a write that was in flight at the kill landed after it (in-flight writes
/// may or may not have landed). Revisions never go backwards: the store's revision after a restart
/// is at least the highest acknowledged one, and every write acknowledged after a restart gets a
/// revision above the one the store had then.
///
/// The model is pure (no I/O), so the checker itself is tested with fabricated histories.
struct CrashHistory: Sendable {
    /// The newest state of a key that the server has promised.
    enum Known: Sendable, Hashable, CustomStringConvertible {
        /// `value` was written at `modRevision` (by an acknowledged write, or seen after a restart).
        case present(value: String, modRevision: Int64)
        /// The key was absent at `revision` (deleted by an acknowledged write, or missing after a restart).
        case absent(revision: Int64)

        var revision: Int64 {
            switch self {
            case .present(_, let modRevision): return modRevision
            case .absent(let revision): return revision
            }
        }

        var description: String {
            switch self {
            case .present(let value, let modRevision): return "\(value) at revision \(modRevision)"
            case .absent(let revision): return "absent at revision \(revision)"
            }
        }
    }

    struct KeyRecord: Sendable {
        var known: Known?
        /// The write that made `known`, for messages; `nil` when it was read after a restart.
        var knownBy: String?
        /// Unacknowledged writes since the last verification, any of which may have landed.
        var inFlight: [(effect: KeyEffect, write: String)] = []
    }

    private(set) var keys: [String: KeyRecord] = [:]
    /// The highest revision in any acknowledged response so far.
    private(set) var highestAcknowledgedRevision: Int64 = 0
    /// The store's revision at the last verification (0 before the first).
    private(set) var verifiedRevision: Int64 = 0
    /// Broken promises found while recording responses (revision reuse or regression).
    private(set) var violations: [String] = []
    /// Acknowledged mutating writes since the last verification, by revision: each must be unique.
    private var writesByRevision: [Int64: String] = [:]
    /// Acknowledged key changes since the last verification, for historical reads.
    private(set) var acknowledgedChanges: [(key: String, effect: KeyEffect, revision: Int64)] = []

    init() {}

    /// Records a write whose response arrived with `revision` in its header.
    mutating func acknowledged(_ write: CrashWrite, revision: Int64) {
        guard !write.effects.isEmpty else {
            // A delete that removed nothing does not bump the revision; it promises nothing new.
            highestAcknowledgedRevision = max(highestAcknowledgedRevision, revision)
            return
        }
        if revision <= verifiedRevision {
            violations.append(
                "revision went backwards: \(write) was acknowledged at revision \(revision), but the store was "
                    + "already at revision \(verifiedRevision) after the last restart"
            )
        }
        if let other = writesByRevision[revision], other != write.description {
            violations.append("two acknowledged writes got revision \(revision): \(other) and \(write)")
        }
        writesByRevision[revision] = write.description
        highestAcknowledgedRevision = max(highestAcknowledgedRevision, revision)
        for change in write.effects {
            acknowledgedChanges.append((change.key, change.effect, revision))
            var record = keys[change.key] ?? KeyRecord()
            // Concurrent writes to one key may be acknowledged out of order: the revision decides.
            if record.known.map({ revision > $0.revision }) ?? true {
                switch change.effect {
                case .put(let value): record.known = .present(value: value, modRevision: revision)
                case .delete: record.known = .absent(revision: revision)
                }
                record.knownBy = write.description
            }
            keys[change.key] = record
        }
    }

    /// Records a write that was sent but got no response (in flight at the kill, or failed).
    mutating func inFlight(_ write: CrashWrite) {
        for change in write.effects {
            keys[change.key, default: KeyRecord()].inFlight.append((change.effect, write.description))
        }
    }

    /// Checks what a restarted server shows (every key under the workload's prefix, and the
    /// store's revision in the same response) against the model. Returns the broken promises.
    func check(observed: [String: ObservedKey], storeRevision: Int64) -> [String] {
        var found = violations
        if storeRevision < highestAcknowledgedRevision {
            found.append(
                "the store's revision after the restart is \(storeRevision), below the highest acknowledged "
                    + "revision \(highestAcknowledgedRevision)"
            )
        }
        if storeRevision < verifiedRevision {
            found.append("the store's revision went back from \(verifiedRevision) to \(storeRevision)")
        }
        for key in Set(keys.keys).union(observed.keys).sorted() {
            if let problem = checkKey(key, observed: observed[key], storeRevision: storeRevision) {
                found.append(problem)
            }
        }
        return found
    }

    private func checkKey(_ key: String, observed: ObservedKey?, storeRevision: Int64) -> String? {
        guard let record = keys[key] else {
            return observed.map { "\(key) = \($0) was never written" }
        }
        let promised = record.known.map { "\($0) (\(record.knownBy ?? "read after the previous restart"))" }
        let inFlight =
            record.inFlight.isEmpty ? "" : "; in flight: " + record.inFlight.map(\.write).joined(separator: ", ")
        guard let observed else {
            guard case .present? = record.known else { return nil }
            if record.inFlight.contains(where: { $0.effect == .delete }) { return nil }
            return "\(key) is missing after the restart; promised: \(promised ?? "nothing")\(inFlight)"
        }
        if observed.modRevision > storeRevision {
            return "\(key) = \(observed) has a mod_revision above the store's revision \(storeRevision)"
        }
        if case .present(let value, let modRevision)? = record.known, value == observed.value,
            modRevision == observed.modRevision
        {
            return nil
        }
        // A landed in-flight write must be newer than both the promise and the last restart.
        let floor = max(record.known?.revision ?? 0, verifiedRevision)
        if record.inFlight.contains(where: { $0.effect == .put(value: observed.value) }), observed.modRevision > floor {
            return nil
        }
        return "\(key) = \(observed) after the restart; promised: \(promised ?? "nothing")\(inFlight)"
    }

    /// Checks a historical read of `change.key` at `change.revision` (an acknowledged change).
    static func checkHistorical(
        key: String,
        effect: KeyEffect,
        revision: Int64,
        observed: ObservedKey?
    ) -> String? {
        switch effect {
        case .put(let value):
            if observed == ObservedKey(value: value, modRevision: revision) { return nil }
        case .delete:
            if observed == nil { return nil }
        }
        return "\(key) at revision \(revision) reads \(observed.map(\.description) ?? "absent"), "
            + "but an acknowledged write did \(effect) there"
    }

    /// Adopts what a restarted server showed, after ``check(observed:storeRevision:)`` passed, as the
    /// promises the next cycle starts from; in-flight writes are settled one way or the other.
    mutating func settle(observed: [String: ObservedKey], storeRevision: Int64) {
        for key in Set(keys.keys).union(observed.keys) {
            var record = KeyRecord()
            if let seen = observed[key] {
                record.known = .present(value: seen.value, modRevision: seen.modRevision)
            } else {
                record.known = .absent(revision: storeRevision)
            }
            keys[key] = record
        }
        verifiedRevision = max(verifiedRevision, storeRevision)
        writesByRevision = [:]
        acknowledgedChanges = []
    }
}
