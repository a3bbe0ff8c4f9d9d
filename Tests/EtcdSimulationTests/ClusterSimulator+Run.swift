import EtcdRaft

/// Whole runs: the randomized schedule, the liveness check, and the failure report.
extension ClusterSimulator {
    struct Outcome {
        var failure: SimulationFailure?
        /// The seed, the failing check, the profile and the recent trace; empty on success.
        var report: String
    }

    /// Ticks within which a healed cluster must elect a leader and commit a new write on a
    /// quorum: 40 election timeouts, generous against randomized timeouts and split votes, yet
    /// far below what a livelock would need to go unnoticed.
    static let livenessTickBudget = 40 * electionTicks

    /// Runs `steps` randomized steps, then heals everything and checks liveness.
    func run(steps: Int) -> Outcome {
        do {
            try bootstrap()
            record(.phase("seed \(seed): \(profile)"))
            while step < UInt64(steps) {
                try randomStep()
            }
            try checkLiveness()
            return Outcome(failure: nil, report: "")
        } catch {
            return Outcome(failure: error, report: report(error))
        }
    }

    /// Heals every fault, restarts every crashed member, and requires that within
    /// `livenessTickBudget` ticks a leader exists and a new write commits on a quorum of its voters.
    func checkLiveness() throws(SimulationFailure) {
        record(.phase("liveness: heal everything and require a leader and a commit"))
        faultsEnabled = false
        if network.isPartitioned {
            network.healAll()
            record(.heal)
        }
        for node in nodes where node.lifecycle == .crashed {
            try restart(node)
        }
        let startTick = now
        var probe: (writeID: UInt64, proposedAt: UInt64)?
        while now - startTick < UInt64(Self.livenessTickBudget) {
            step += 1
            let due = network.dueCount(now: now)
            if due > 0 {
                try deliver(ordinal: random.below(due))
            } else {
                try tick()
                statistics.livenessTicks += 1
            }
            if let current = probe, let index = linearizability.writes[current.writeID]?.index {
                if committedOnQuorum(index: index) {
                    record(.phase("liveness: write \(current.writeID) committed at \(index) on a quorum"))
                    return
                }
            } else if probe.map({ now - $0.proposedAt > UInt64(3 * Self.electionTicks) }) ?? true,
                let leader = currentLeader, leader.isVoter
            {
                // A proposal can be lost with a deposed leader: propose a new one after a while.
                let write = WriteCommand(key: 0, writeID: allocateWriteID())
                if try propose(write, at: leader) { probe = (write.writeID, now) }
            }
        }
        let states = nodes.map { node in
            "\(node.id): \(node.lifecycle) \(node.role.rawValue) term \(node.term) leader \(node.leader) "
                + "commit \(node.commit) applied \(node.applied) voters \(node.confState.voters) learners \(node.confState.learners)"
        }
        throw SimulationFailure(
            check: "liveness",
            detail: "no leader committed a new write on a quorum within \(Self.livenessTickBudget) ticks of healing "
                + "(probe: \(probe.map { "write \($0.writeID)" } ?? "never accepted")); members:\n    "
                + states.joined(separator: "\n    "))
    }

    /// Whether a quorum of the current leader's voters has committed `index`.
    private func committedOnQuorum(index: UInt64) -> Bool {
        guard let leader = currentLeader else { return false }
        let voters = leader.confState.voters
        var count = 0
        for voter in voters {
            if let node = node(voter), node.isRunning, node.commit >= index { count += 1 }
        }
        return count >= voters.count / 2 + 1
    }

    func report(_ failure: SimulationFailure) -> String {
        var lines = [
            "SIMULATION FAILURE: seed \(seed) at step \(step) (tick \(now))",
            "failed check: \(failure.check): \(failure.detail)",
            "profile: \(profile)",
            "last \(trace.capacity) events:",
        ]
        lines += trace.lines
        lines.append("failed check: \(failure.check) (seed \(seed))")
        lines.append("replay: SEED=\(seed) swift test --filter EtcdSimulationTests")
        return lines.joined(separator: "\n")
    }
}

/// Building blocks for scenario tests: fault-free time, and isolating one member.
extension ClusterSimulator {
    /// Lets `ticks` ticks pass, delivering every message that falls due in between.
    func runTicks(_ ticks: Int) throws(SimulationFailure) {
        let end = now + UInt64(ticks)
        while now < end {
            step += 1
            let due = network.dueCount(now: now)
            if due > 0 {
                try deliver(ordinal: random.below(due))
            } else {
                try tick()
            }
        }
    }

    /// Cuts every link to and from `id`, in both directions.
    func isolate(_ id: NodeID) {
        for other in nodes where other.id != id {
            network.block(from: id, to: other.id)
            network.block(from: other.id, to: id)
        }
        record(.partition(description: "isolate \(id)"))
    }

    func healAll() {
        network.healAll()
        record(.heal)
    }
}
