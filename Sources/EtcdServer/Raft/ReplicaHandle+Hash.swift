import EtcdMVCC
import EtcdReplica

extension ReplicaHandle {
    /// Rows hashed per hold of the replica: a few milliseconds, so applies and reads queue behind
    /// a hash of a large store for no longer than that (etcd hashes from a read transaction that
    /// holds nobody up; this is the same promise for a store shared under one lock).
    static let hashPieceRows = 10_000

    /// HashKV at `revision` (0: the current one), in pieces (see ``MVCCStore/startHashKV(revision:)``).
    func hashKV(revision: Int64) async throws -> KVHash {
        try await hashInPieces { store throws(MVCCError) in try store.startHashKV(revision: revision) }
    }

    /// The Hash RPC's checksum of every stored row, in pieces.
    func hashAllRows() async throws -> KVHash {
        try await hashInPieces { store throws(MVCCError) in store.startHashAllRows() }
    }

    private func hashInPieces(_ start: (MVCCStore) throws(MVCCError) -> HashProgress) async throws -> KVHash {
        var progress = try read { (replica) throws(ReplicaError) -> HashProgress in
            do throws(MVCCError) {
                return try start(replica.store)
            } catch {
                throw ReplicaError(error)
            }
        }
        while true {
            let (hash, next) = try read { [progress] (replica) throws(ReplicaError) -> (KVHash?, HashProgress) in
                var piece = progress
                do throws(MVCCError) {
                    return (try replica.store.continueHash(&piece, rows: Self.hashPieceRows), piece)
                } catch {
                    throw ReplicaError(error)
                }
            }
            if let hash { return hash }
            progress = next
            await Task.yield()
        }
    }
}
