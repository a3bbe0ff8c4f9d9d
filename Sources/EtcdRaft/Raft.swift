internal import Logging

/// The Raft protocol state machine of one node: no I/O, no clock, no threads.
///
/// Inputs are `tick()` and `step(_:)`; outputs accumulate in `messages` and `readStates` and in
/// the log's unstable and committed entries, which `RaftNode` packages into a `Ready`. Section
/// numbers in comments refer to Diego Ongaro's thesis, "Consensus: Bridging Theory and Practice".
struct Raft {
    let id: NodeID
    var term: UInt64 = 0
    var vote: NodeID = .none
    var log: RaftLog
    var tracker: ProgressTracker
    var role: RaftRole = .follower
    /// This node is a learner in the current configuration (it never campaigns or votes).
    var isLearner = false
    var leader: NodeID = .none
    /// The member a leadership transfer is handing over to, while one is in progress.
    var leadTransferee: NodeID = .none
    /// The leader may propose a new configuration change only once this index is applied.
    var pendingConfIndex: UInt64 = 0
    /// Payload bytes of entries appended by this leader and not yet applied.
    var uncommittedBytes = 0
    var readOnly = ReadOnlyQueue()
    /// ReadIndex requests that arrived before this leader committed an entry of its term.
    var pendingReadIndexRequests: [Message] = []
    /// A heartbeat round for the newest safe ReadIndex request is still to be broadcast; see
    /// `flushReadIndexRound`.
    var readIndexRoundPending = false

    var messages: [Message] = []
    var readStates: [ReadState] = []

    var electionElapsed = 0
    var heartbeatElapsed = 0
    /// Ticks since this node started, saturating at the election timeout; see `honoursLease`.
    var ticksSinceStart = 0
    /// The leader's own clock for lease-based reads: ticks since it became leader, starting at 1
    /// so that 0 can mean "never acknowledged". Heartbeats carry it and their answers echo it.
    var leaderTicks: UInt64 = 0
    /// A TimeoutNow went out this term. Its campaign overrides leader stickiness, so from then on
    /// the lease proves nothing and lease-based reads take the safe path.
    var sentTimeoutNowThisTerm = false
    var randomizedElectionTimeout = 0

    let electionTimeout: Int
    let heartbeatTimeout: Int
    let checkQuorum: Bool
    let preVote: Bool
    let readOnlyOption: ReadOnlyOption
    let disableProposalForwarding: Bool
    let maxMessageBytes: Int
    let maxUncommittedBytes: Int
    var random: any RandomNumberGenerator
    let logger: Logger

    /// The context that marks a vote request as part of a leadership transfer, which lets it
    /// through leader stickiness (§3.10).
    static let transferContext = Array("CampaignTransfer".utf8)

    init(configuration: RaftConfiguration, storage: any RaftStorage, random: any RandomNumberGenerator) {
        configuration.validate()
        id = configuration.id
        log = RaftLog(storage: storage, maxCommittedBytesPerReady: configuration.maxCommittedBytesPerReady)
        tracker = ProgressTracker(maxInflight: configuration.maxInflightMessages)
        electionTimeout = configuration.electionTicks
        heartbeatTimeout = configuration.heartbeatTicks
        checkQuorum = configuration.checkQuorum
        preVote = configuration.preVote
        readOnlyOption = configuration.readOnlyOption
        disableProposalForwarding = configuration.disableProposalForwarding
        maxMessageBytes = configuration.maxSizePerMessageBytes
        maxUncommittedBytes = configuration.maxUncommittedEntriesBytes
        self.random = random
        logger = configuration.logger

        let (hardState, confState) = RaftLog.mustRead { () throws(RaftStorageError) in try storage.initialState() }
        tracker.apply(confState, nextIndex: log.lastIndex + 1)
        isLearner = tracker.progress[id]?.isLearner ?? false
        if !hardState.isEmpty { load(hardState) }
        if configuration.applied > 0 { log.applied(to: configuration.applied) }
        becomeFollower(term: term, leader: .none)
        logger.info(
            "raft node starting",
            metadata: [
                "raft_id": "\(id)", "term": "\(term)", "commit": "\(log.committed)", "applied": "\(log.applied)",
                "last_index": "\(log.lastIndex)", "last_term": "\(log.lastTerm)", "voters": "\(tracker.voters)",
            ]
        )
    }

    private mutating func load(_ state: HardState) {
        precondition(
            state.commit >= log.committed && state.commit <= log.lastIndex,
            "raft: hard state commit \(state.commit) out of range [\(log.committed), \(log.lastIndex)]"
        )
        log.committed = state.commit
        term = state.term
        vote = state.vote
    }

    var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    var softState: SoftState { SoftState(leader: leader, role: role) }

    /// Can this node become leader? Not if it was removed, is a learner, or is still installing
    /// a snapshot (its log is not usable until then).
    var isPromotable: Bool {
        tracker.progress[id] != nil && !isLearner && !log.hasPendingSnapshot
    }

    // MARK: - Role transitions

    mutating func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = .none
        }
        leader = .none
        electionElapsed = 0
        heartbeatElapsed = 0
        resetRandomizedElectionTimeout()
        leadTransferee = .none
        sentTimeoutNowThisTerm = false
        leaderTicks = 0
        tracker.resetVotes()
        let lastIndex = log.lastIndex
        for memberID in tracker.memberIDs {
            guard var progress = tracker.progress[memberID] else { continue }
            let isLearner = progress.isLearner
            progress = Progress(next: lastIndex + 1, maxInflight: tracker.maxInflight, isLearner: isLearner)
            if memberID == id { progress.match = lastIndex }
            tracker.progress[memberID] = progress
        }
        pendingConfIndex = 0
        uncommittedBytes = 0
        readOnly = ReadOnlyQueue()
        readIndexRoundPending = false
    }

    mutating func resetRandomizedElectionTimeout() {
        randomizedElectionTimeout = electionTimeout + Int.random(in: 0..<electionTimeout, using: &random)
    }

    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        leader = newLeader
        role = .follower
        logger.debug("became follower", metadata: ["raft_id": "\(id)", "term": "\(term)", "leader": "\(newLeader)"])
    }

    mutating func becomeCandidate() {
        precondition(role != .leader, "raft: invalid transition [leader -> candidate] at term \(term)")
        reset(term: term + 1)
        vote = id
        role = .candidate
        logger.debug("became candidate", metadata: ["raft_id": "\(id)", "term": "\(term)"])
    }

    /// A pre-candidate neither increments its term nor votes; it only asks whether it could win.
    mutating func becomePreCandidate() {
        precondition(role != .leader, "raft: invalid transition [leader -> pre-candidate] at term \(term)")
        tracker.resetVotes()
        role = .preCandidate
        leader = .none
        logger.debug("became pre-candidate", metadata: ["raft_id": "\(id)", "term": "\(term)"])
    }

    mutating func becomeLeader() {
        precondition(role != .follower, "raft: invalid transition [follower -> leader] at term \(term)")
        reset(term: term)
        leader = id
        role = .leader
        leaderTicks = 1
        tracker.progress[id]?.becomeReplicate()
        // Conservatively treat any unapplied entry as a possible configuration change (§4.1).
        pendingConfIndex = log.lastIndex
        // §5.4.2/§6.4: an empty entry of the new term lets the leader learn what is committed.
        let appended = appendEntries([Entry(term: 0, index: 0)])
        precondition(appended, "raft: empty entry was dropped when becoming leader at term \(term)")
        logger.info("became leader", metadata: ["raft_id": "\(id)", "term": "\(term)"])
    }

    // MARK: - Time

    mutating func tick() {
        if ticksSinceStart < electionTimeout { ticksSinceStart += 1 }
        if role == .leader {
            tickHeartbeat()
        } else {
            tickElection()
        }
    }

    private mutating func tickElection() {
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            stepLocal(Message(type: .hup, from: id))
        }
    }

    private mutating func tickHeartbeat() {
        leaderTicks += 1
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= electionTimeout {
            electionElapsed = 0
            if checkQuorum { stepLocal(Message(type: .checkQuorum, from: id)) }
            // A transfer that did not finish within an election timeout is abandoned (§3.10).
            if role == .leader && leadTransferee != .none { abortLeaderTransfer() }
        }
        guard role == .leader else { return }
        if heartbeatElapsed >= heartbeatTimeout {
            heartbeatElapsed = 0
            stepLocal(Message(type: .beat, from: id))
        }
    }

    /// Steps a message this node generated itself; those never fail.
    mutating func stepLocal(_ message: Message) {
        do {
            try step(message)
        } catch {
            logger.debug("local message dropped", metadata: ["raft_id": "\(id)", "type": "\(message.type)"])
        }
    }

    // MARK: - Step

    mutating func step(_ message: Message) throws(RaftError) {
        if message.term == 0 {
            // Local messages, and proposals and reads forwarded by a follower, carry no term.
        } else if message.term > term {
            if message.type == .vote || message.type == .preVote {
                let forced = message.context == Self.transferContext
                // Leader stickiness (§4.2.3): while we hear from a live leader, a vote request
                // from a node that lost contact is ignored, so it cannot disrupt the cluster.
                if !forced && honoursLease {
                    logger.debug(
                        "ignored vote request within lease",
                        metadata: ["raft_id": "\(id)", "from": "\(message.from)", "term": "\(term)"]
                    )
                    return
                }
            }
            switch message.type {
            case .preVote:
                // A pre-vote never changes our term.
                break
            case .preVoteResponse where !message.reject:
                // Granted pre-votes carry the future term; counting them must not move ours.
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: .none)
            }
        } else if message.term < term {
            if (checkQuorum || preVote) && (message.type == .heartbeat || message.type == .append) {
                // A stale leader (e.g. one just healed from a partition) learns our newer term
                // from this answer and steps down. Without it, with CheckQuorum or PreVote on,
                // it could stay unaware forever while we ignore its messages.
                send(Message(type: .appendResponse, to: message.from))
            } else if message.type == .preVote {
                send(Message(type: .preVoteResponse, to: message.from, term: term, reject: true))
            }
            return
        }

        switch message.type {
        case .hup:
            hup(transfer: false)
        case .vote, .preVote:
            handleVoteRequest(message)
        default:
            switch role {
            case .leader: try stepLeader(message)
            case .candidate, .preCandidate: try stepCandidate(message)
            case .follower: try stepFollower(message)
            }
        }
    }

    /// Whether this node refuses (non-forced) vote requests because a leader may still hold a
    /// lease on it: it heard from a leader less than an election timeout ago. With lease-based
    /// reads, a node that just (re)started also waits one election timeout, because it may have
    /// acknowledged a heartbeat before crashing and forgotten it; that promise is what the
    /// leader's lease rests on.
    var honoursLease: Bool {
        guard checkQuorum else { return false }
        if leader != .none && electionElapsed < electionTimeout { return true }
        return readOnlyOption == .leaseBased && ticksSinceStart < electionTimeout
    }

    private mutating func handleVoteRequest(_ message: Message) {
        // §3.6: vote at most once per term; a repeated request from our choice is answered again.
        let canVote =
            vote == message.from
            || (vote == .none && leader == .none)
            || (message.type == .preVote && message.term > term)
        let responseType: MessageType = message.type == .vote ? .voteResponse : .preVoteResponse
        if canVote && log.isUpToDate(lastIndex: message.index, term: message.logTerm) {
            // A granted answer carries the requested term: for a pre-vote that is a future term
            // this node has not adopted.
            send(Message(type: responseType, to: message.from, term: message.term))
            if message.type == .vote {
                electionElapsed = 0
                vote = message.from
            }
        } else {
            send(Message(type: responseType, to: message.from, term: term, reject: true))
        }
    }

    mutating func hup(transfer: Bool) {
        if role == .leader { return }
        guard isPromotable else {
            logger.debug("not promotable, ignoring campaign", metadata: ["raft_id": "\(id)"])
            return
        }
        // A configuration change committed but not applied could change who may vote.
        if hasUnappliedConfChanges() {
            logger.info("pending configuration changes, not campaigning", metadata: ["raft_id": "\(id)"])
            return
        }
        if transfer {
            campaign(kind: .transfer)
        } else {
            campaign(kind: preVote ? .preElection : .election)
        }
    }

    private func hasUnappliedConfChanges() -> Bool {
        guard log.applied < log.committed else { return false }
        let entries = (try? log.slice(from: log.applied + 1, to: log.committed + 1, maxBytes: Int.max)) ?? []
        return entries.contains { $0.type == .confChange }
    }

    enum CampaignKind { case preElection, election, transfer }

    mutating func campaign(kind: CampaignKind) {
        guard isPromotable else { return }
        let voteType: MessageType
        let voteTerm: UInt64
        if kind == .preElection {
            becomePreCandidate()
            voteType = .preVote
            // Ask with the term we would use, without adopting it.
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteType = .vote
            voteTerm = term
        }
        if poll(from: id, type: voteType == .vote ? .voteResponse : .preVoteResponse, granted: true) == .won {
            // A single voter wins at once.
            if kind == .preElection {
                campaign(kind: .election)
            } else {
                becomeLeader()
            }
            return
        }
        let context = kind == .transfer ? Self.transferContext : []
        for voter in tracker.voters where voter != id {
            send(
                Message(
                    type: voteType, to: voter, term: voteTerm, logTerm: log.lastTerm, index: log.lastIndex,
                    context: context
                )
            )
        }
    }

    mutating func poll(from voter: NodeID, type: MessageType, granted: Bool) -> VoteResult {
        tracker.recordVote(from: voter, granted: granted)
        return tracker.tallyVotes().result
    }

    // MARK: - Output

    mutating func send(_ message: Message) {
        var message = message
        // A forwarded message keeps its sender, as etcd-io/raft does: a transfer request names
        // the transferee in `from`, and a read forwarded twice must be answered to its origin.
        if message.from == .none { message.from = id }
        switch message.type {
        case .vote, .voteResponse, .preVote, .preVoteResponse:
            // Vote traffic sets its term explicitly: a pre-vote asks with a future term.
            precondition(message.term != 0, "raft: term should be set when sending \(message.type)")
        case .propose, .readIndex:
            // Forwarded proposals and reads travel like local messages, without a term, so that
            // the leader never rejects them as stale.
            break
        default:
            precondition(message.term == 0, "raft: term should not be set when sending \(message.type) (was \(message.term))")
            message.term = term
        }
        messages.append(message)
    }
}
