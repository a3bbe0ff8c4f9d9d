public import EtcdAPI

/// One entry of the replicated log: what a mutating request becomes before it is applied.
public struct LogEntry: Sendable {
    public var index: UInt64
    public var term: UInt64
    public var request: Etcdserverpb_InternalRaftRequest
}

/// The log of a lone member, until Raft replaces it: every proposal is committed the moment it is
/// appended, at a fixed term. It keeps only entries not yet applied.
///
/// It exists so that the apply path already has Raft's shape (propose, then apply committed entries
/// in index order, recording the applied index with the data); the Raft issue swaps it for a
/// `RaftNode` without touching the applier.
struct LocalLog {
    static let term: UInt64 = 1
    private(set) var lastIndex: UInt64
    private var unapplied: [LogEntry] = []

    init(appliedIndex: UInt64) {
        lastIndex = appliedIndex
    }

    mutating func append(_ request: Etcdserverpb_InternalRaftRequest) -> UInt64 {
        lastIndex += 1
        unapplied.append(LogEntry(index: lastIndex, term: Self.term, request: request))
        return lastIndex
    }

    /// Hands over every committed entry not yet applied; a lone member commits all of them.
    mutating func takeCommitted() -> [LogEntry] {
        defer { unapplied.removeAll(keepingCapacity: true) }
        return unapplied
    }
}
