import EtcdRaft

/// Everything about a run that the seed decides up front: cluster shape, Raft options and fault
/// rates. Rates are per simulator step unless said otherwise. Some seeds draw zero for a fault,
/// so runs without it are covered too (a fault that is always on can hide behind another).
struct SimProfile: CustomStringConvertible {
    var clusterSize: Int
    var readOnlyOption: ReadOnlyOption
    var disableProposalForwarding: Bool
    var maxSizePerMessageBytes: Int
    var maxInflightMessages: Int
    /// Ticks between heartbeats: etcd's default of 1 for most seeds, sometimes 2 or 3 (fewer
    /// messages per tick, so more ticks and elections fit in a run).
    var heartbeatTicks: Int
    var lossRate: Double
    var duplicateRate: Double
    /// Delivery delay in ticks, drawn per message from 0...maxDelayTicks (reordering follows).
    var maxDelayTicks: Int
    /// Probability that a message ignores the FIFO order of its link (see `SimNetwork`).
    var reorderRate: Double
    /// Probability that a message gets a long delay (up to 4 election timeouts) instead.
    var longDelayRate: Double
    var partitionRate: Double
    var healRate: Double
    var crashRate: Double
    var restartRate: Double
    /// Probability that a Ready cycle is cut short by a crash (before persisting, after
    /// persisting, or after sending).
    var crashInReadyRate: Double
    /// Probability that a crash also loses the last unsynced (commit-only) hard state write.
    var loseUnsyncedRate: Double
    var writeRate: Double
    var readRate: Double
    var confChangeRate: Double
    var transferRate: Double
    /// Per node tick: probability of skipping it (clock drift). Always 0 with lease-based reads,
    /// whose safety assumes bounded drift.
    var tickSkipRate: Double
    /// Take a snapshot once this many entries were applied since the last one.
    var snapshotInterval: UInt64
    /// Entries kept in the log below the snapshot index when compacting.
    var compactionLag: UInt64

    init(random: inout SimRandom) {
        clusterSize = random.int(in: 3...7)
        // Lease-based reads for 10% of seeds. A lease is only as good as the members' clocks
        // agreeing on the length of a tick, so those seeds never skip ticks (below).
        let wantsLeaseReads = random.chance(0.1)
        readOnlyOption = wantsLeaseReads ? .leaseBased : .safe
        disableProposalForwarding = random.chance(0.15)
        maxSizePerMessageBytes = random.chance(0.3) ? random.int(in: 1...200) : 1024 * 1024
        maxInflightMessages = random.chance(0.3) ? random.int(in: 1...8) : 256
        heartbeatTicks = random.chance(0.6) ? 1 : random.int(in: 2...3)
        let faulty = !random.chance(0.1)
        lossRate = faulty && random.chance(0.8) ? random.double(0, 0.2) : 0
        duplicateRate = faulty && random.chance(0.5) ? random.double(0, 0.1) : 0
        maxDelayTicks = random.int(in: 0...(random.chance(0.5) ? 2 : 8))
        reorderRate = faulty && random.chance(0.7) ? random.double(0, 0.1) : 0
        longDelayRate = faulty && random.chance(0.3) ? random.double(0, 0.02) : 0
        partitionRate = faulty && random.chance(0.7) ? random.double(0, 0.004) : 0
        healRate = random.double(0.002, 0.02)
        crashRate = faulty && random.chance(0.7) ? random.double(0, 0.003) : 0
        restartRate = random.double(0.003, 0.03)
        crashInReadyRate = crashRate > 0 && random.chance(0.5) ? random.double(0, 0.002) : 0
        loseUnsyncedRate = random.double(0, 1)
        writeRate = random.double(0.01, 0.08)
        readRate = random.double(0.01, 0.06)
        confChangeRate = random.chance(0.6) ? random.double(0, 0.004) : 0
        transferRate = random.chance(0.5) ? random.double(0, 0.003) : 0
        // Seeds with lease reads never drift: a skipped tick is a clock running slow.
        tickSkipRate = !wantsLeaseReads && random.chance(0.3) ? random.double(0, 0.2) : 0
        snapshotInterval = UInt64(random.int(in: 3...60))
        compactionLag = UInt64(random.chance(0.5) ? 0 : random.int(in: 1...10))
    }

    func configuration(for id: NodeID, applied: UInt64) -> RaftConfiguration {
        var configuration = RaftConfiguration(id: id)
        configuration.applied = applied
        configuration.heartbeatTicks = heartbeatTicks
        configuration.readOnlyOption = readOnlyOption
        configuration.disableProposalForwarding = disableProposalForwarding
        configuration.maxSizePerMessageBytes = maxSizePerMessageBytes
        configuration.maxInflightMessages = maxInflightMessages
        return configuration
    }

    var description: String {
        func rate(_ value: Double) -> String {
            let scaled = Int((value * 10_000).rounded())
            return "\(scaled / 100).\(scaled % 100 < 10 ? "0" : "")\(scaled % 100)%"
        }
        return "nodes=\(clusterSize) heartbeat=\(heartbeatTicks) readOnly=\(readOnlyOption) noForwarding=\(disableProposalForwarding) "
            + "maxMsgBytes=\(maxSizePerMessageBytes) maxInflight=\(maxInflightMessages) "
            + "loss=\(rate(lossRate)) dup=\(rate(duplicateRate)) delay=0...\(maxDelayTicks) "
            + "reorder=\(rate(reorderRate)) longDelay=\(rate(longDelayRate)) partition=\(rate(partitionRate)) heal=\(rate(healRate)) "
            + "crash=\(rate(crashRate)) restart=\(rate(restartRate)) crashInReady=\(rate(crashInReadyRate)) "
            + "confChange=\(rate(confChangeRate)) transfer=\(rate(transferRate)) tickSkip=\(rate(tickSkipRate)) "
            + "snapshotEvery=\(snapshotInterval) compactionLag=\(compactionLag)"
    }
}
