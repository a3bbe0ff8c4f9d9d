import EtcdRaft

/// A check that failed: which property, and what was seen.
struct SimulationFailure: Error, CustomStringConvertible {
    var check: String
    var detail: String

    var description: String { "\(check): \(detail)" }
}

/// The Raft safety properties (thesis figure 3.2), checked incrementally as the simulation runs:
/// every recording method costs time proportional to what changed, not to the history.
struct SafetyChecker {
    struct CommittedRecord {
        var term: UInt64
        var digest: UInt64
        /// The state-machine chain after applying this entry (see `Digest.chain`).
        var chain: UInt64
        /// The term of the first node seen applying it: the entry was committed in this term or
        /// earlier, so every leader of a later term must hold it.
        var observedTerm: UInt64
    }

    struct IndexTerm: Hashable {
        var index: UInt64
        var term: UInt64
    }

    struct Fingerprint {
        var digest: UInt64
        var previousTerm: UInt64
    }

    /// A leader's log at the moment it was elected, as runs of equal terms (terms never decrease
    /// along a log, so there are at most as many runs as terms).
    struct Election {
        var term: UInt64
        var leader: NodeID
        var firstIndex: UInt64
        var lastIndex: UInt64
        /// (first index of the run, term), ascending.
        var runs: [(start: UInt64, term: UInt64)]

        /// The term of the entry at `index`; nil when the log has no such entry. Entries below
        /// `firstIndex` were compacted into a snapshot of committed state and count as present.
        func term(at index: UInt64) -> UInt64?? {
            if index < firstIndex { return .some(nil) }
            if index > lastIndex { return nil }
            var low = 0
            var high = runs.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if runs[middle].start <= index { low = middle } else { high = middle - 1 }
            }
            return .some(runs[low].term)
        }
    }

    /// Committed entries by index (position `index - 1`): state machine safety says this is one
    /// history shared by every node.
    private(set) var committed: [CommittedRecord] = []
    /// Election safety: the one leader of each term.
    private(set) var leaders: [UInt64: NodeID] = [:]
    /// Every election, sorted by term.
    private(set) var elections: [Election] = []
    /// Log matching: every (index, term) pair ever persisted determines the entry's content and
    /// the term of the entry before it; by induction two logs that share an (index, term) are
    /// then identical up to it.
    private var persisted: [IndexTerm: Fingerprint] = [:]

    var committedCount: UInt64 { UInt64(committed.count) }

    func committedRecord(at index: UInt64) -> CommittedRecord? {
        guard index >= 1, index <= committedCount else { return nil }
        return committed[Int(index - 1)]
    }

    // MARK: Election safety and leader completeness

    /// Records that `leader` became leader of `term` holding `log` (entries from `firstIndex`
    /// to `lastIndex`), and checks it holds every entry known to be committed in earlier terms.
    mutating func recordElection(term: UInt64, leader: NodeID, log: [Entry], firstIndex: UInt64, lastIndex: UInt64)
        throws(SimulationFailure)
    {
        if let previous = leaders[term] {
            guard previous == leader else {
                throw SimulationFailure(
                    check: "election safety", detail: "term \(term) has two leaders: \(previous) and \(leader)")
            }
            return
        }
        leaders[term] = leader
        var runs: [(start: UInt64, term: UInt64)] = []
        for entry in log where runs.last?.term != entry.term {
            if let last = runs.last, entry.term < last.term {
                throw SimulationFailure(
                    check: "log order",
                    detail: "leader \(leader) of term \(term): term \(entry.term) at \(entry.index) after term \(last.term)")
            }
            runs.append((entry.index, entry.term))
        }
        let election = Election(
            term: term, leader: leader, firstIndex: firstIndex, lastIndex: lastIndex,
            runs: runs.isEmpty ? [(start: firstIndex, term: UInt64(0))] : runs)
        for (offset, record) in committed.enumerated() where record.observedTerm < term {
            try Self.checkHolds(election, index: UInt64(offset + 1), record: record)
        }
        let position = elections.firstIndex { $0.term > term } ?? elections.endIndex
        elections.insert(election, at: position)
    }

    private static func checkHolds(_ election: Election, index: UInt64, record: CommittedRecord)
        throws(SimulationFailure)
    {
        guard let found = election.term(at: index) else {
            throw SimulationFailure(
                check: "leader completeness",
                detail: "leader \(election.leader) of term \(election.term) lacks entry \(index) "
                    + "(term \(record.term), committed by term \(record.observedTerm)); its last index is \(election.lastIndex)")
        }
        if let term = found, term != record.term {
            throw SimulationFailure(
                check: "leader completeness",
                detail: "leader \(election.leader) of term \(election.term) has term \(term) at \(index), "
                    + "but term \(record.term) was committed there (by term \(record.observedTerm))")
        }
    }

    // MARK: Log matching

    /// Records entries a node is about to persist. `previousTerm` is the term of the entry just
    /// before `entries[0]` in that node's log (nil when it is compacted away).
    mutating func recordPersisted(_ entries: [Entry], node: NodeID, previousTerm firstPrevious: UInt64?)
        throws(SimulationFailure)
    {
        var previous = firstPrevious
        for entry in entries {
            defer { previous = entry.term }
            guard let previousTerm = previous else { continue }
            if previousTerm > entry.term {
                throw SimulationFailure(
                    check: "log order",
                    detail: "node \(node) persists term \(entry.term) at \(entry.index) after term \(previousTerm)")
            }
            let key = IndexTerm(index: entry.index, term: entry.term)
            let fingerprint = Fingerprint(digest: Digest.entry(entry), previousTerm: previousTerm)
            if let known = persisted[key] {
                guard known.digest == fingerprint.digest, known.previousTerm == previousTerm else {
                    throw SimulationFailure(
                        check: "log matching",
                        detail: "node \(node) persists entry \(entry.index) of term \(entry.term) with digest "
                            + "\(fingerprint.digest) after term \(previousTerm); another log has digest "
                            + "\(known.digest) after term \(known.previousTerm)")
                }
            } else {
                persisted[key] = fingerprint
            }
        }
    }

    // MARK: State machine safety

    /// Records that `node`, in term `observedTerm`, applied `entry` reaching state chain `chain`.
    /// Returns true when this is the first time any node applied this index.
    mutating func recordApplied(entry: Entry, digest: UInt64, chain: UInt64, node: NodeID, observedTerm: UInt64)
        throws(SimulationFailure) -> Bool
    {
        if let record = committedRecord(at: entry.index) {
            guard record.term == entry.term, record.digest == digest else {
                throw SimulationFailure(
                    check: "state machine safety",
                    detail: "node \(node) applies entry \(entry.index) term \(entry.term) digest \(digest); "
                        + "another node applied term \(record.term) digest \(record.digest)")
            }
            guard record.chain == chain else {
                throw SimulationFailure(
                    check: "state machine safety",
                    detail: "node \(node) reaches state \(chain) at \(entry.index); another node reached \(record.chain)")
            }
            return false
        }
        guard entry.index == committedCount + 1 else {
            throw SimulationFailure(
                check: "state machine safety",
                detail: "node \(node) applies entry \(entry.index) but only \(committedCount) are known committed")
        }
        let record = CommittedRecord(term: entry.term, digest: digest, chain: chain, observedTerm: observedTerm)
        committed.append(record)
        // Leaders already elected in later terms must hold it too.
        for election in elections.reversed() {
            guard election.term > observedTerm else { break }
            try Self.checkHolds(election, index: entry.index, record: record)
        }
        return true
    }

    /// A snapshot (or a restart from one) must carry exactly the state every node had at its index.
    func checkSnapshotState(index: UInt64, term: UInt64, chain: UInt64, node: NodeID) throws(SimulationFailure) {
        guard let record = committedRecord(at: index) else {
            throw SimulationFailure(
                check: "snapshot", detail: "node \(node) has a snapshot at \(index), beyond what any node applied")
        }
        guard record.term == term, record.chain == chain else {
            throw SimulationFailure(
                check: "snapshot",
                detail: "node \(node) snapshot at \(index) has term \(term) state \(chain); "
                    + "the applied history has term \(record.term) state \(record.chain)")
        }
    }
}
