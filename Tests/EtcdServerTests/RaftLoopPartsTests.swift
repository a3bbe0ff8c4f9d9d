import EtcdAPI
import EtcdCommon
import EtcdReplica
import Testing

@testable import EtcdServer

@Suite("Raft loop: pending requests and the mailbox")
struct RaftLoopPartsTests {
    @Test("past its capacity, a new write is refused with etcd's 'too many requests'")
    func tooManyRequests() async throws {
        let pending = PendingRequests(capacity: 2)
        let far = ContinuousClock.now.advanced(by: .seconds(60))
        let first = Task { try await withCheckedThrowingContinuation { try? pending.registerWrite(1, $0, deadline: far) } }
        let second = Task { try await withCheckedThrowingContinuation { try? pending.registerWrite(2, $0, deadline: far) } }
        try await waitUntil { pending.waitingWrites == 2 }
        let refused = await #expect(throws: EtcdError.tooManyRequests) {
            let _: ApplyResponse = try await withCheckedThrowingContinuation { continuation in
                do {
                    try pending.registerWrite(3, continuation, deadline: far)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
        #expect(refused?.message == "etcdserver: too many requests")
        // Answering one makes room again.
        var response = Etcdserverpb_PutResponse()
        response.header.revision = 7
        pending.complete([AppliedRequest(requestID: 1, result: .success(.put(response)))])
        guard case .put(let answered) = try await first.value else {
            Issue.record("not a put")
            return
        }
        #expect(answered.header.revision == 7)
        pending.failAll(with: EtcdError.stopped)
        await #expect(throws: EtcdError.stopped) { _ = try await second.value }
    }

    @Test("overdue writes and reads fail with 'request timed out'; others keep waiting")
    func timeouts() async throws {
        let pending = PendingRequests(capacity: 10)
        let start = ContinuousClock.now
        let overdueWrite = Task {
            try await withCheckedThrowingContinuation { try? pending.registerWrite(1, $0, deadline: start.advanced(by: .seconds(1))) }
        }
        let overdueRead = Task {
            try await withCheckedThrowingContinuation { try? pending.registerRead(1, $0, deadline: start.advanced(by: .seconds(1))) }
        }
        let laterRead = Task {
            try await withCheckedThrowingContinuation { try? pending.registerRead(2, $0, deadline: start.advanced(by: .seconds(10))) }
        }
        try await waitUntil { pending.waitingWrites == 1 && pending.waitingReads == 2 }
        // The clock is passed in, so no test has to wait out a real timeout.
        pending.expire(now: start.advanced(by: .seconds(2)))
        let writeError = await #expect(throws: EtcdError.timeout) { _ = try await overdueWrite.value }
        #expect(writeError?.message == "etcdserver: request timed out")
        await #expect(throws: EtcdError.timeout) { try await overdueRead.value }
        pending.completeReads([2], with: .success(()))
        try await laterRead.value
    }

    @Test("the mailbox hands over everything queued at once, drops surplus ticks, and drains before it ends")
    func mailbox() async throws {
        let mailbox = RaftMailbox()
        try mailbox.submit(QueuedProposal(id: 1, data: [1]))
        try mailbox.submit(QueuedProposal(id: 2, data: [2]))
        try mailbox.submit(QueuedProposal(id: 3, data: [3]))
        try mailbox.submitRead(9)
        mailbox.tick()
        mailbox.tick()
        let first = try #require(mailbox.nextBlocking(maxProposals: 2))
        #expect(first.proposals.map(\.id) == [1, 2])
        #expect(first.reads == [9])
        #expect(first.tick)
        mailbox.close()
        #expect(throws: EtcdError.stopped) { try mailbox.submit(QueuedProposal(id: 4, data: [])) }
        let second = try #require(mailbox.nextBlocking(maxProposals: 2))
        #expect(second.proposals.map(\.id) == [3])
        #expect(!second.tick)
        #expect(mailbox.nextBlocking(maxProposals: 2) == nil)
    }
}
