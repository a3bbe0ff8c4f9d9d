import EtcdAPI
import EtcdCommon
import EtcdReplica
import Logging
import NIOPosix

/// The single owner of the write path: takes queued proposals in batches and applies each batch in
/// one backend transaction (group commit), then answers every caller of the batch.
///
/// Applying runs on a dedicated thread, because a batch ends in an fsync that must not hold up
/// the threads that serve requests.
struct ApplyLoop: Sendable {
    let queue: ProposalQueue
    let replica: ReplicaHandle
    let maxBatch: Int
    let logger: Logger

    func run() async {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        while let batch = await queue.nextBatch(maxCount: maxBatch) {
            let requests = batch.map(\.request)
            let results: [Result<ApplyResponse, ReplicaError>]
            do {
                results = try await thread.runIfActive { [replica] in
                    replica.withReplica { $0.propose(requests) }
                }
            } catch {
                results = Array(repeating: .failure(.storage("apply thread stopped: \(error)")), count: batch.count)
            }
            precondition(results.count == batch.count, "apply returned \(results.count) results for \(batch.count)")
            for (proposal, result) in zip(batch, results) {
                switch result {
                case .success(let response): proposal.continuation.resume(returning: response)
                case .failure(let error): proposal.continuation.resume(throwing: error)
                }
            }
        }
        try? await thread.shutdownGracefully()
        logger.debug("apply loop drained")
    }
}
