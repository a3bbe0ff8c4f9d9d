import EtcdAPI
import EtcdCommon
import EtcdMVCC
import EtcdReplica
import Logging

/// When to compact, as etcd's compactors decide (`--auto-compaction-mode` and
/// `--auto-compaction-retention`), without a clock or I/O of its own: the runner calls ``tick``
/// every ``tickInterval`` with the current revision and time, and reports each compaction that
/// took effect.
///
/// - periodic (retention a duration): a revision is sampled every tenth of the retention (of an
///   hour at most); once a full retention has passed since the start, the revision sampled a
///   retention ago is compacted, and then again every retention (every hour at most). A failed
///   compaction is retried at the next tick.
/// - revision (retention a count): every five minutes, the revision that many behind the
///   current one is compacted, unless it is the one compacted last time.
struct AutoCompactionSchedule {
    private enum State {
        case periodic(Periodic)
        case revision(retention: Int64, lastCompacted: Int64)
    }

    private struct Periodic {
        let period: Duration
        let compactInterval: Duration
        let retainedSamples: Int
        var samples: [Int64]
        var lastSuccess: Duration
        var wait: Duration
    }

    /// How often the runner calls ``tick(currentRevision:now:)``.
    let tickInterval: Duration
    private var state: State

    /// etcd's interval between revision-mode compactions.
    static let revisionModeInterval = Duration.seconds(300)

    init(_ mode: AutoCompaction, startRevision: Int64, now: Duration) {
        switch mode {
        case .periodic(let retention):
            let compactInterval = min(retention, .seconds(3_600))
            tickInterval = compactInterval / 10
            state = .periodic(
                Periodic(
                    period: retention, compactInterval: compactInterval,
                    retainedSamples: Int(retention / tickInterval) + 1,
                    samples: [startRevision], lastSuccess: now, wait: retention))
        case .revision(let retention):
            tickInterval = Self.revisionModeInterval
            state = .revision(retention: retention, lastCompacted: 0)
        }
    }

    /// The revision to compact now, if any. `leading` false (a member that does not lead) only
    /// records the revision, as etcd's paused compactor does.
    mutating func tick(currentRevision: Int64, now: Duration, leading: Bool) -> Int64? {
        switch state {
        case .periodic(var periodic):
            defer {
                periodic.samples.append(currentRevision)
                if periodic.samples.count > periodic.retainedSamples { periodic.samples.removeFirst() }
                state = .periodic(periodic)
            }
            guard leading, now - periodic.lastSuccess >= periodic.wait else { return nil }
            periodic.wait = periodic.compactInterval
            return periodic.samples[0]
        case .revision(let retention, let lastCompacted):
            guard leading else { return nil }
            let target = currentRevision - retention
            return target > 0 && target != lastCompacted ? target : nil
        }
    }

    /// A compaction at `revision` took effect (or had already: the store was compacted further).
    mutating func compacted(_ revision: Int64, now: Duration) {
        switch state {
        case .periodic(var periodic):
            periodic.lastSuccess = now
            state = .periodic(periodic)
        case .revision(let retention, _):
            state = .revision(retention: retention, lastCompacted: revision)
        }
    }

    /// How the log names the mode's retention.
    var logMetadata: Logger.Metadata {
        switch state {
        case .periodic(let periodic): return ["compact-period": "\(periodic.period)"]
        case .revision(let retention, _): return ["revision-compaction-retention": "\(retention)"]
        }
    }
}

/// Runs an ``AutoCompactionSchedule`` on the leader: compactions are proposed through Raft like
/// a client's (not physical), from whichever member leads at the time.
struct AutoCompactor: Sendable {
    let mode: AutoCompaction
    let status: MemberStatusBoard
    let replica: ReplicaHandle
    let proposer: RequestProposer
    let localMember: MemberID
    let logger: Logger

    func run(until shutdown: ShutdownSignal) async {
        let clock = ContinuousClock()
        let start = clock.now
        let revision = { (try? replica.read { $0.store.currentRevision }) ?? 0 }
        var schedule = AutoCompactionSchedule(mode, startRevision: revision(), now: .zero)
        logger.info("auto compaction is enabled", metadata: schedule.logMetadata)
        while await shutdown.sleep(schedule.tickInterval) {
            let now = start.duration(to: clock.now)
            let leading = status.leader == localMember.rawValue
            guard let target = schedule.tick(currentRevision: revision(), now: now, leading: leading) else { continue }
            var metadata = schedule.logMetadata
            metadata["revision"] = "\(target)"
            logger.info("starting auto compaction", metadata: metadata)
            var entry = Etcdserverpb_InternalRaftRequest()
            entry.compaction.revision = target
            do {
                _ = try await proposer.propose(entry)
                schedule.compacted(target, now: start.duration(to: clock.now))
                logger.info("completed auto compaction", metadata: metadata)
            } catch ReplicaError.request(.compacted) {
                // Compacted further already (by a client): as good as done.
                schedule.compacted(target, now: start.duration(to: clock.now))
            } catch {
                metadata["error"] = "\(error)"
                logger.warning("failed auto compaction", metadata: metadata)
            }
        }
    }
}
