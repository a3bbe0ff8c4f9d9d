import EtcdAPI
import EtcdRaft
import EtcdTestSupport
import Foundation
import GRPCCore
import Synchronization

/// The writes of the crash test, over a bounded keyspace under `crash/` so that any number of
/// cycles can share one data directory: each writer owns a few dozen keys (no one else writes
/// them), and all writers overwrite, delete and txn over a small shared set.
enum CrashWorkload {
    static let prefix = "crash/"
    /// The end of the range holding every key of the workload (`/` + 1 is `0`).
    static let prefixEnd = "crash0"
    static let ownKeysPerWriter = 48
    static let sharedKeys = 6

    static func ownKey(writer: Int, slot: Int) -> String { "crash/w\(writer)/\(slot)" }
    static func sharedKey(_ index: Int) -> String { "crash/shared/\(index)" }

    /// One request of the workload.
    enum Operation: Sendable {
        case put(key: String, value: String)
        /// If `key` exists: put it and delete `deleting`; otherwise only put it.
        case txn(key: String, value: String, deleting: String)
        case delete(key: String)
    }

    /// Draws a writer's next operation; `label` makes every value unique across the run.
    static func nextOperation(writer: Int, label: String, using random: inout SplitMix64) -> Operation {
        let value = "v-\(label)"
        let roll = Int.random(in: 0..<100, using: &random)
        let own = ownKey(writer: writer, slot: Int.random(in: 0..<ownKeysPerWriter, using: &random))
        let shared = Int.random(in: 0..<sharedKeys, using: &random)
        switch roll {
        case 0..<40: return .put(key: own, value: value)
        case 40..<65: return .put(key: sharedKey(shared), value: value)
        case 65..<80:
            let other = (shared + Int.random(in: 1..<sharedKeys, using: &random)) % sharedKeys
            return .txn(key: sharedKey(shared), value: value, deleting: sharedKey(other))
        case 80..<90: return .delete(key: sharedKey(shared))
        default: return .delete(key: own)
        }
    }

    /// What `operation` changes if it lands but its outcome is unknown (every branch it might take).
    static func possibleWrite(_ operation: Operation, label: String) -> CrashWrite {
        switch operation {
        case .put(let key, let value):
            return CrashWrite(label: "put#\(label)", effects: [.init(key: key, effect: .put(value: value))])
        case .txn(let key, let value, let deleting):
            return CrashWrite(
                label: "txn#\(label)",
                effects: [.init(key: key, effect: .put(value: value)), .init(key: deleting, effect: .delete)]
            )
        case .delete(let key):
            return CrashWrite(label: "delete#\(label)", effects: [.init(key: key, effect: .delete)])
        }
    }

    /// Sends `operation` and returns what it did, as its response tells, with the header's revision.
    static func perform(
        _ operation: Operation,
        label: String,
        on client: EtcdGRPCClient,
        options: CallOptions
    ) async throws -> (write: CrashWrite, revision: Int64) {
        switch operation {
        case .put(let key, let value):
            let response = try await client.kv.put(KVRequest.put(key, value), options: options)
            return (possibleWrite(operation, label: label), response.header.revision)
        case .txn(let key, let value, let deleting):
            let request = KVRequest.txn(
                [KVRequest.compare(key, .greater, .version(0))],
                success: [.put(KVRequest.put(key, value)), .delete(KVRequest.delete(deleting))],
                failure: [.put(KVRequest.put(key, value))]
            )
            let response = try await client.kv.txn(request, options: options)
            var write = possibleWrite(operation, label: label)
            // The failure branch only puts. On success the key `deleting` is absent at this
            // revision whether or not it existed, so the delete is a promise either way.
            if !response.succeeded { write.effects.removeLast() }
            return (write, response.header.revision)
        case .delete(let key):
            let response = try await client.kv.deleteRange(KVRequest.delete(key), options: options)
            var write = possibleWrite(operation, label: label)
            // Deleting nothing leaves the revision alone; the header then shows the current one.
            if response.deleted == 0 { write.effects = [] }
            return (write, response.header.revision)
        }
    }
}

/// What the writers of one cycle saw, shared between them and the task that kills the server (or
/// cluster members).
final class CycleRecorder: Sendable {
    struct Log: Sendable {
        var acknowledged: [(write: CrashWrite, revision: Int64)] = []
        var inFlight: [CrashWrite] = []
        /// Errors that arrived before the kill: a healthy server should not produce any.
        var unexpectedErrors: [String] = []
        var killRequested = false
        /// Writers stop after their current call once this is set.
        var stopRequested = false
        var runningWriters: Int
    }

    private struct State {
        var log: Log
        var target: Int
        var deadlinePassed = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    init(writers: Int, killAfterAcknowledgements target: Int) {
        state = Mutex(State(log: Log(runningWriters: writers), target: target))
    }

    var log: Log { state.withLock { $0.log } }
    var killRequested: Bool { state.withLock { $0.log.killRequested } }
    var stopRequested: Bool { state.withLock { $0.log.stopRequested } }

    /// Marks the kill as requested; errors after this point are the kill's doing. Unless
    /// `stopWriters` is false (a cluster that keeps quorum takes writes while a member is down),
    /// writers stop after their current call.
    func requestKill(stopWriters: Bool = true) {
        state.withLock { state in
            state.log.killRequested = true
            if stopWriters { state.log.stopRequested = true }
        }
    }

    /// Asks writers to stop after their current call.
    func requestStop() { state.withLock { $0.log.stopRequested = true } }

    func acknowledged(_ write: CrashWrite, revision: Int64) {
        update { $0.acknowledged.append((write, revision)) }
    }

    func failed(_ write: CrashWrite, error: any Error) {
        update { log in
            log.inFlight.append(write)
            if !log.killRequested { log.unexpectedErrors.append("\(write) failed before the kill: \(error)") }
        }
    }

    func writerFinished() { update { $0.runningWriters -= 1 } }

    /// Waits until enough writes are acknowledged (true), or every writer stopped, a writer failed
    /// before the kill, or `timeout` passed (false).
    func waitForKillMoment(timeout: Duration) async -> Bool {
        await wait(timeout: timeout)
        return state.withLock { $0.log.acknowledged.count >= $0.target && $0.log.unexpectedErrors.isEmpty }
    }

    /// Like ``waitForKillMoment(timeout:)``, for `count` acknowledged writes in all.
    func waitForAcknowledgements(_ count: Int, timeout: Duration) async -> Bool {
        state.withLock { $0.target = count }
        return await waitForKillMoment(timeout: timeout)
    }

    /// Waits until every writer has returned (true) or `timeout` passed (false).
    func waitForWriters(timeout: Duration) async -> Bool {
        state.withLock { $0.target = .max }
        await wait(timeout: timeout)
        return state.withLock { $0.log.runningWriters == 0 }
    }

    private func wait(timeout: Duration) async {
        state.withLock { $0.deadlinePassed = false }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { state -> Bool in
                        if Self.isWaitOver(state) { return true }
                        state.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
            group.addTask {
                // The deadline of the wait, not a pause: the other child ends the wait as soon as
                // the condition holds.
                try? await Task.sleep(for: timeout)
                self.state.withLock { state in
                    state.deadlinePassed = true
                    return state.waiter.take()
                }?.resume()
            }
            await group.next()
            // Ends the deadline's child early when the condition held first.
            group.cancelAll()
        }
    }

    private static func isWaitOver(_ state: State) -> Bool {
        state.log.acknowledged.count >= state.target || !state.log.unexpectedErrors.isEmpty
            || state.log.runningWriters == 0 || state.deadlinePassed
    }

    private func update(_ change: (inout Log) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            change(&state.log)
            return Self.isWaitOver(state) ? state.waiter.take() : nil
        }
        waiter?.resume()
    }
}

extension CrashWorkload {
    /// One writer: sends operations one after another through `clients[0]` until it is asked to
    /// stop or its call fails; a write without a response is recorded as in flight (its outcome is
    /// unknown).
    ///
    /// With several clients (one per cluster member), a call that fails after the kill moves the
    /// writer on to the next client, as etcd's clientv3 moves to another endpoint; before the kill
    /// any failure stops the writer.
    static func runWriter(
        _ writer: Int,
        cycle: Int,
        seed: UInt64,
        clients: [EtcdGRPCClient],
        recorder: CycleRecorder,
        options: CallOptions
    ) async {
        defer { recorder.writerFinished() }
        var random = SplitMix64(seed: seed)
        var number = 0
        var current = 0
        while !recorder.stopRequested && !Task.isCancelled && current < clients.count {
            let label = "c\(cycle)w\(writer)n\(number)"
            number += 1
            let operation = nextOperation(writer: writer, label: label, using: &random)
            do {
                let (write, revision) = try await perform(
                    operation,
                    label: label,
                    on: clients[current],
                    options: options
                )
                recorder.acknowledged(write, revision: revision)
            } catch {
                recorder.failed(possibleWrite(operation, label: label), error: error)
                guard recorder.killRequested, clients.count > 1 else { return }
                current = (current + 1) % clients.count
                // A backoff, not a synchronisation: a killed member refuses at once, and a writer
                // must not spin through the members while a new leader is being elected.
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
