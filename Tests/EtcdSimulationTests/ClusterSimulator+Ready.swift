import EtcdRaft

/// The Ready cycle of one member, as `Ready` documents it: persist, send, apply, advance, with
/// the checks fed at each stage and an optional crash between the stages.
extension ClusterSimulator {
    /// Bound on Ready cycles in one step for one member; more means the node never settles.
    static let maxReadyRounds = 64

    func processReadies(_ node: SimNode) throws(SimulationFailure) {
        var rounds = 0
        while node.isRunning, node.raft?.hasReady() == true {
            rounds += 1
            guard rounds <= Self.maxReadyRounds else {
                throw SimulationFailure(check: "ready", detail: "node \(node.id) still has a Ready after \(rounds) rounds")
            }
            try processReady(node)
        }
        if node.isRunning && node.appliedOwnRemoval { retire(node) }
    }

    private func processReady(_ node: SimNode) throws(SimulationFailure) {
        guard let ready = node.raft?.ready() else { return }
        try observe(ready, on: node)

        let crashPoint = faultsEnabled && random.chance(profile.crashInReadyRate) ? random.int(in: 0...2) : -1
        if crashPoint == 0 {
            crash(node, when: "before persisting a Ready")
            return
        }
        try persist(ready, on: node)
        if crashPoint == 1 {
            crash(node, when: "after persisting, before sending")
            return
        }
        send(ready.messages)
        if crashPoint == 2 {
            crash(node, when: "after sending, before applying")
            return
        }
        try apply(ready, on: node)
        for readState in ready.readStates {
            guard let id = Bytes.readUInt64(readState.requestContext, at: 0),
                var read = node.clientReads[id], read.readIndex == nil
            else { continue }
            read.readIndex = readState.index
            node.clientReads[id] = read
            node.readsAwaitingApply.append(id)
        }
        node.raft?.advance(ready)
        try serveReads(on: node)
        try maybeTakeSnapshot(node)
    }

    /// Role and term changes, and election safety and leader completeness when a node leads.
    private func observe(_ ready: Ready, on node: SimNode) throws(SimulationFailure) {
        if let hardState = ready.hardState {
            node.term = hardState.term
            node.commit = hardState.commit
        }
        guard let softState = ready.softState else { return }
        node.role = softState.role
        node.leader = softState.leader
        guard softState.role == .leader, let raft = node.raft else {
            record(.roleChange(node: node.id, role: softState.role, leader: softState.leader, term: node.term))
            return
        }
        record(.becameLeader(node: node.id, term: node.term))
        statistics.elections += 1
        let status = raft.status
        guard status.hardState.term == node.term else {
            throw SimulationFailure(
                check: "ready", detail: "leader \(node.id) reports term \(node.term) but its status says \(status.hardState.term)")
        }
        try safety.recordElection(
            term: node.term, leader: node.id, log: raft.allEntries, firstIndex: status.firstIndex,
            lastIndex: status.lastIndex)
    }

    // MARK: Persist

    private func persist(_ ready: Ready, on node: SimNode) throws(SimulationFailure) {
        let storage = node.storage
        if let snapshot = ready.snapshot {
            do {
                try storage.applySnapshot(snapshot)
            } catch {
                throw SimulationFailure(
                    check: "ready", detail: "node \(node.id) cannot install snapshot \(snapshot.metadata.index): \(error)")
            }
        }
        if let first = ready.entries.first {
            let previousTerm = try? storage.term(at: first.index - 1)
            try safety.recordPersisted(ready.entries, node: node.id, previousTerm: previousTerm)
            storage.append(ready.entries)
        }
        if let hardState = ready.hardState {
            storage.setHardState(hardState)
            if !ready.mustSync {
                // Written without fsync: a crash may lose it.
                node.unsyncedHardState = hardState
                return
            }
            // Terms never go back on disk, and a member never votes twice in one term (§3.6);
            // both must hold across crashes, which is why they need an fsync.
            if hardState.term < node.recordedTerm {
                throw SimulationFailure(
                    check: "durable term", detail: "node \(node.id) persists term \(hardState.term) after \(node.recordedTerm)")
            }
            if hardState.term == node.recordedTerm && node.recordedVote != .none && hardState.vote != node.recordedVote {
                throw SimulationFailure(
                    check: "vote once per term",
                    detail: "node \(node.id) voted for \(node.recordedVote) and then \(hardState.vote) in term \(hardState.term)")
            }
            node.recordedTerm = hardState.term
            node.recordedVote = hardState.vote
        }
        if ready.mustSync {
            // An fsync makes every earlier write durable too.
            node.syncedHardState = storage.hardState
            node.unsyncedHardState = nil
        }
    }

    // MARK: Apply

    private func apply(_ ready: Ready, on node: SimNode) throws(SimulationFailure) {
        if let snapshot = ready.snapshot {
            try install(snapshot, on: node)
        }
        for entry in ready.committedEntries {
            try applyEntry(entry, on: node)
        }
    }

    private func install(_ snapshot: Snapshot, on node: SimNode) throws(SimulationFailure) {
        let metadata = snapshot.metadata
        guard let state = KVStateMachine(encoded: snapshot.data), state.appliedIndex == metadata.index else {
            throw SimulationFailure(check: "snapshot", detail: "node \(node.id) got snapshot \(metadata.index) with bad data")
        }
        guard metadata.index > node.applied else {
            throw SimulationFailure(
                check: "snapshot", detail: "node \(node.id) at applied \(node.applied) got older snapshot \(metadata.index)")
        }
        try safety.checkSnapshotState(index: metadata.index, term: metadata.term, chain: state.chain, node: node.id)
        node.stateMachine = state
        node.confState = metadata.confState
        statistics.snapshotsInstalled += 1
        record(.snapshotInstalled(node: node.id, index: metadata.index))
    }

    private func applyEntry(_ entry: Entry, on node: SimNode) throws(SimulationFailure) {
        guard entry.index == node.applied + 1 else {
            throw SimulationFailure(
                check: "apply order", detail: "node \(node.id) at applied \(node.applied) is handed entry \(entry.index)")
        }
        let digest = Digest.entry(entry)
        let write = node.stateMachine.apply(entry, entryDigest: digest)
        let isFirst = try safety.recordApplied(
            entry: entry, digest: digest, chain: node.stateMachine.chain, node: node.id, observedTerm: node.term)
        if isFirst { try firstCommitted(entry, write: write) }
        if let write, node.clientWrites.removeValue(forKey: write.writeID) != nil {
            try linearizability.completeWrite(id: write.writeID, step: step)
            record(.writeAcknowledged(node: node.id, writeID: write.writeID, index: entry.index))
        }
        guard entry.type == .confChange else { return }
        guard let change = ConfChange(encoded: entry.data) else {
            throw SimulationFailure(check: "apply", detail: "entry \(entry.index) is not a configuration change")
        }
        if let confState = node.raft?.applyConfChange(change) {
            node.confState = confState
        }
        statistics.confChangesApplied += 1
        record(.appliedConfChange(node: node.id, change: change, index: entry.index))
        if change.kind == .removeNode && change.nodeID == node.id { node.appliedOwnRemoval = true }
    }

    /// The first time any member applies an index: the entry is committed history now.
    private func firstCommitted(_ entry: Entry, write: WriteCommand?) throws(SimulationFailure) {
        if let write { try linearizability.writeCommitted(id: write.writeID, index: entry.index) }
        guard entry.type == .confChange, let change = ConfChange(encoded: entry.data) else { return }
        switch change.kind {
        case .addNode, .addLearnerNode:
            if node(change.nodeID) == nil && !removedIDs.contains(change.nodeID) { spawn(change.nodeID) }
        case .removeNode:
            removedIDs.insert(change.nodeID)
            if let removed = node(change.nodeID), removed.lifecycle == .crashed { retire(removed) }
        case .updateNode:
            break
        }
    }

    func serveReads(on node: SimNode) throws(SimulationFailure) {
        guard !node.readsAwaitingApply.isEmpty else { return }
        var waiting: [UInt64] = []
        for id in node.readsAwaitingApply {
            guard let read = node.clientReads[id], let readIndex = read.readIndex else { continue }
            guard readIndex <= node.applied else {
                waiting.append(id)
                continue
            }
            node.clientReads[id] = nil
            let write = node.stateMachine.values[read.key]
            let writeIndex = node.stateMachine.writeIndexes[read.key]
            record(.readServed(node: node.id, readID: id, index: readIndex, write: write, writeIndex: writeIndex))
            try linearizability.completeRead(
                id: id, observedWrite: write, observedIndex: writeIndex, step: step, node: "\(node.id)")
        }
        node.readsAwaitingApply = waiting
    }

    // MARK: Snapshots

    /// Snapshots the state machine at the applied index once enough was applied since the last
    /// one, then compacts the log (keeping `compactionLag` entries, so followers just behind
    /// can still catch up from the log).
    ///
    /// It also snapshots as soon as the membership differs from the latest snapshot's. Raft
    /// refuses a snapshot whose membership does not list the receiving member (etcd-io/raft
    /// does the same), so a member added after the last snapshot, whose missing entries were
    /// compacted away, could otherwise never catch up. etcd avoids this by sending a fresh
    /// snapshot built at send time; keeping the stored one current is the equivalent here.
    private func maybeTakeSnapshot(_ node: SimNode) throws(SimulationFailure) {
        let storage = node.storage
        let applied = node.applied
        let latest = storage.currentSnapshot.metadata
        guard applied > latest.index else { return }
        guard applied >= latest.index + profile.snapshotInterval || latest.confState != node.confState else { return }
        do {
            try storage.createSnapshot(at: applied, confState: node.confState, data: node.stateMachine.encoded())
            let compactTo = applied - min(profile.compactionLag, applied)
            if compactTo >= (try storage.firstIndex()) { try storage.compact(upTo: compactTo) }
        } catch {
            throw SimulationFailure(check: "snapshot", detail: "node \(node.id) cannot snapshot at \(applied): \(error)")
        }
        // Writing a snapshot syncs, which makes any unsynced hard state durable too.
        node.syncedHardState = storage.hardState
        node.unsyncedHardState = nil
        statistics.snapshotsTaken += 1
        record(.snapshotTaken(node: node.id, index: applied, compactedTo: (try? storage.firstIndex()).map { $0 - 1 } ?? 0))
    }

    // MARK: Crash and restart

    func crash(_ node: SimNode, when: StaticString) {
        precondition(node.isRunning, "sim: crashing member \(node.id) that is not running")
        var lostUnsynced = false
        if let unsynced = node.unsyncedHardState {
            lostUnsynced = random.chance(profile.loseUnsyncedRate)
            if !lostUnsynced { node.syncedHardState = unsynced }
        }
        node.unsyncedHardState = nil
        node.storage.setHardState(node.syncedHardState)
        node.raft = nil
        node.lifecycle = .crashed
        node.role = .follower
        node.leader = .none
        dropClientRequests(of: node)
        statistics.crashes += 1
        record(.crash(node: node.id, when: when, lostUnsynced: lostUnsynced))
        if removedIDs.contains(node.id) { retire(node) }
    }

    /// Restarts a crashed member from its disk: a new MemoryStorage rebuilt from the durable
    /// snapshot, entries and hard state, and the state machine from the snapshot (the entries
    /// after it are replayed as Raft hands them out again).
    func restart(_ node: SimNode) throws(SimulationFailure) {
        precondition(node.lifecycle == .crashed, "sim: restarting member \(node.id) that did not crash")
        let disk = node.storage
        let snapshot = disk.currentSnapshot
        let storage: MemoryStorage
        var state = KVStateMachine()
        do {
            if snapshot.isEmpty {
                storage = MemoryStorage(confState: snapshot.metadata.confState)
            } else {
                storage = MemoryStorage()
                try storage.applySnapshot(snapshot)
                guard let decoded = KVStateMachine(encoded: snapshot.data) else {
                    throw SimulationFailure(check: "restart", detail: "node \(node.id) has an unreadable snapshot")
                }
                try safety.checkSnapshotState(
                    index: snapshot.metadata.index, term: snapshot.metadata.term, chain: decoded.chain, node: node.id)
                state = decoded
            }
            let first = try disk.firstIndex()
            let last = try disk.lastIndex()
            if last >= first { storage.append(try disk.entries(from: first, to: last + 1, maxBytes: Int.max)) }
        } catch let failure as SimulationFailure {
            throw failure
        } catch {
            throw SimulationFailure(check: "restart", detail: "node \(node.id) cannot read its disk: \(error)")
        }
        storage.setHardState(node.syncedHardState)
        node.storage = storage
        node.stateMachine = state
        node.confState = snapshot.metadata.confState
        node.appliedOwnRemoval = false
        start(node)
        statistics.restarts += 1
        record(
            .restart(
                node: node.id, term: node.syncedHardState.term, commit: node.syncedHardState.commit,
                snapshotIndex: snapshot.metadata.index, lastIndex: (try? storage.lastIndex()) ?? 0))
        try processReadies(node)
    }
}
