import EtcdRaft

/// One simulated member: its disk (which survives crashes), and the process state (Raft node,
/// state machine, client requests) which a crash throws away.
final class SimNode {
    enum Lifecycle: Equatable {
        case running
        case crashed
        /// Removed from the group and no longer simulated.
        case retired
    }

    let id: NodeID
    /// Whether this member was one of the voters the group was bootstrapped with (otherwise it
    /// joined by a configuration change and starts from an empty log).
    let isInitialMember: Bool
    var lifecycle: Lifecycle = .running

    // MARK: Disk

    /// The durable log and snapshot. Entries and snapshots are only ever written by a Ready with
    /// `mustSync` (or by taking a snapshot, which syncs), so what is here survives a crash.
    var storage: MemoryStorage
    /// The hard state that an fsync made durable.
    var syncedHardState = HardState()
    /// A hard state written without fsync (a commit-only update); a crash may lose it.
    var unsyncedHardState: HardState?

    // MARK: Process

    var raft: RaftNode?
    var stateMachine = KVStateMachine()
    /// The membership as of `stateMachine.appliedIndex`.
    var confState: ConfState
    /// From the last Ready: term, role and commit as this node sees them.
    var term: UInt64 = 0
    var role: RaftRole = .follower
    var leader: NodeID = .none
    var commit: UInt64 = 0
    /// Writes proposed here whose client is waiting for this node to apply them.
    var clientWrites: [UInt64: Int] = [:]
    /// Reads started here, by read ID: the key, and the read index once Raft answered.
    var clientReads: [UInt64: ClientRead] = [:]
    /// Read IDs that have a read index and wait for `applied` to reach it, in answer order.
    var readsAwaitingApply: [UInt64] = []
    /// Counts incarnations, so a trace shows which process life an event belongs to.
    var incarnation = 0

    // MARK: History (checked across incarnations)

    /// The highest durable term recorded, and the vote cast in it: terms never go back and a
    /// member never votes twice in one term, even across crashes.
    var recordedTerm: UInt64 = 0
    var recordedVote: NodeID = .none
    /// Members that joined this node's group: this node applied its own removal.
    var appliedOwnRemoval = false

    struct ClientRead {
        var key: Int
        var readIndex: UInt64?
    }

    init(id: NodeID, isInitialMember: Bool, storage: MemoryStorage, confState: ConfState) {
        self.id = id
        self.isInitialMember = isInitialMember
        self.storage = storage
        self.confState = confState
    }

    var isRunning: Bool { lifecycle == .running }
    var applied: UInt64 { stateMachine.appliedIndex }
    var isVoter: Bool { confState.voters.contains(id) }
}
