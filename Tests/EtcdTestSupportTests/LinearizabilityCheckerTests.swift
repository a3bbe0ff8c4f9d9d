import EtcdTestSupport
import Synchronization
import Testing

/// Porcupine's register: a single integer, 0 at first.
struct RegisterModel: LinearizabilityModel {
    enum Input: Hashable, CustomStringConvertible {
        case put(Int)
        case get

        var description: String {
            switch self {
            case .put(let value): return "put(\(value))"
            case .get: return "get()"
            }
        }
    }

    var initialState: Int { 0 }

    func step(_ state: Int, input: Input, output: Int?) -> Int? {
        switch input {
        case .put(let value): return value
        case .get: return output == nil || output == state ? state : nil
        }
    }
}

/// A counter whose `maybeIncrement` may or may not count (a nondeterministic model).
struct MaybeCounterModel: NondeterministicLinearizabilityModel {
    enum Input { case maybeIncrement, read }

    var initialStates: [Int] { [0] }

    func step(_ state: Int, input: Input, output: Int?) -> [Int] {
        switch input {
        case .maybeIncrement: return [state, state + 1]
        case .read: return output == nil || output == state ? [state] : []
        }
    }
}

typealias RegisterOperation = HistoryOperation<RegisterModel.Input, Int>
typealias KVOperation = HistoryOperation<EtcdKVInput, EtcdKVOutput>

func put(_ value: Int, client: Int, _ call: Int64, _ ret: Int64) -> RegisterOperation {
    RegisterOperation(clientID: client, input: .put(value), call: call, output: 0, return: ret)
}

func get(_ value: Int, client: Int, _ call: Int64, _ ret: Int64) -> RegisterOperation {
    RegisterOperation(clientID: client, input: .get, call: call, output: value, return: ret)
}

@Suite("Linearizability checker: the search")
struct LinearizabilitySearchTests {
    // Porcupine's TestRegisterModel, from MIT 6.824's 2017 quiz 2 (section VII).
    @Test("A read of the new value and a read of the old one, both overlapping the write, linearize")
    func quizHistoryLinearizable() {
        let history = [put(100, client: 0, 0, 100), get(100, client: 1, 25, 75), get(0, client: 2, 30, 60)]
        #expect(checkLinearizable(history, model: RegisterModel()).isOK)
    }

    @Test("A read of the old value after a read of the new one has returned does not linearize")
    func quizHistoryIllegal() throws {
        let history = [put(200, client: 0, 0, 100), get(200, client: 1, 10, 30), get(0, client: 2, 40, 90)]
        let result = checkLinearizable(history, model: RegisterModel())
        let violation = try #require(result.violation, "\(result)")
        // Nothing can be dropped: without the write, the read of 200 fails instead.
        #expect(violation.operations == history)
        #expect(violation.shrunk)
        #expect(violation.blockedOperation.contains("get() -> 0"))
        #expect(violation.longestLinearization.count == 2)
        #expect(violation.description.contains("client 2 [40, 90] get() -> 0"))
    }

    @Test("An empty history, and one of sequential operations, linearize; a lost write does not")
    func sequential() {
        #expect(checkLinearizable([RegisterOperation](), model: RegisterModel()).isOK)
        let good = [put(1, client: 0, 0, 1), get(1, client: 0, 2, 3), put(2, client: 1, 4, 5), get(2, client: 0, 6, 7)]
        #expect(checkLinearizable(good, model: RegisterModel()).isOK)
        let lost = [put(1, client: 0, 0, 1), put(2, client: 1, 2, 3), get(1, client: 0, 4, 5)]
        #expect(checkLinearizable(lost, model: RegisterModel()).isIllegal)
    }

    @Test("Concurrent writes may land in either order, but readers after both must agree on the last")
    func concurrentWrites() {
        let writes = [put(1, client: 0, 0, 10), put(2, client: 1, 5, 15)]
        // A read overlapping both writes may see either, or the initial value.
        for value in [0, 1, 2] {
            #expect(checkLinearizable(writes + [get(value, client: 2, 1, 20)], model: RegisterModel()).isOK)
        }
        #expect(checkLinearizable(writes + [get(1, client: 2, 20, 30)], model: RegisterModel()).isOK)
        #expect(checkLinearizable(writes + [get(2, client: 2, 20, 30)], model: RegisterModel()).isOK)
        // Once both returned, the value cannot flip between them, nor go back to the start.
        let flip = writes + [get(2, client: 2, 20, 30), get(1, client: 3, 31, 40)]
        #expect(checkLinearizable(flip, model: RegisterModel()).isIllegal)
        #expect(checkLinearizable(writes + [get(0, client: 2, 20, 30)], model: RegisterModel()).isIllegal)
        // Two readers overlapping each other and the writes may see opposite orders only if
        // neither read finished before the other began.
        let overlapping = writes + [get(2, client: 2, 1, 30), get(1, client: 3, 2, 30)]
        #expect(checkLinearizable(overlapping, model: RegisterModel()).isOK)
        let ordered = writes + [get(2, client: 2, 1, 12), get(1, client: 3, 13, 30), get(2, client: 4, 31, 32)]
        #expect(checkLinearizable(ordered, model: RegisterModel()).isIllegal)
    }

    @Test("Operations that touch at one instant count as overlapping")
    func touchingIntervals() {
        #expect(checkLinearizable([put(1, client: 0, 0, 10), get(0, client: 1, 10, 20)], model: RegisterModel()).isOK)
        #expect(checkLinearizable([put(1, client: 0, 0, 10), get(0, client: 1, 11, 20)], model: RegisterModel()).isIllegal)
    }

    @Test("A write whose outcome is unknown may have taken effect, or not, but not both")
    func unknownOutcomeWrites() {
        let maybe = RegisterOperation.unknown(clientID: 0, input: .put(1), call: 0)
        #expect(maybe.returnTime == RegisterOperation.never)
        // Took effect: seen later.
        #expect(checkLinearizable([maybe, get(1, client: 1, 100, 110)], model: RegisterModel()).isOK)
        // Did not (or not yet): never seen.
        #expect(checkLinearizable([maybe, get(0, client: 1, 100, 110)], model: RegisterModel()).isOK)
        // Seen, then unseen: it cannot be undone.
        let both = [maybe, get(1, client: 1, 100, 110), get(0, client: 2, 120, 130)]
        #expect(checkLinearizable(both, model: RegisterModel()).isIllegal)
        // Not seen at first, then seen: it took effect late, which is fine.
        let late = [maybe, get(0, client: 1, 100, 110), get(1, client: 2, 120, 130)]
        #expect(checkLinearizable(late, model: RegisterModel()).isOK)
        // An acknowledged write gets no such latitude.
        let acknowledged = [put(1, client: 0, 0, 10), get(0, client: 1, 100, 110)]
        #expect(checkLinearizable(acknowledged, model: RegisterModel()).isIllegal)
        // Nor can an unknown write take effect before it was called.
        let early = [get(1, client: 1, 0, 10), RegisterOperation.unknown(clientID: 0, input: .put(1), call: 20)]
        #expect(checkLinearizable(early, model: RegisterModel()).isIllegal)
        // A read with an unknown outcome constrains nothing.
        let read = RegisterOperation(clientID: 3, input: .get, call: 0, output: nil, return: 5)
        #expect(checkLinearizable([read, put(7, client: 0, 1, 2)], model: RegisterModel()).isOK)
    }

    @Test("Unknown writes that overwrite each other: any one of them may be the last, or none")
    func severalUnknownWrites() {
        let maybes = (1...6).map { RegisterOperation.unknown(clientID: $0, input: .put($0), call: Int64($0)) }
        for value in 0...6 {
            #expect(checkLinearizable(maybes + [get(value, client: 9, 100, 110)], model: RegisterModel()).isOK)
        }
        let sequence = maybes + [get(3, client: 9, 100, 110), get(5, client: 9, 120, 130), get(3, client: 9, 140, 150)]
        #expect(checkLinearizable(sequence, model: RegisterModel()).isIllegal)
    }

    @Test("A nondeterministic model is checked through its powerset")
    func nondeterministicModel() {
        typealias Operation = HistoryOperation<MaybeCounterModel.Input, Int>
        let increments = (0..<3).map { Operation(clientID: $0, input: .maybeIncrement, call: Int64($0) * 10, output: nil, return: Int64($0) * 10 + 5) }
        for count in 0...3 {
            let read = Operation(clientID: 9, input: .read, call: 100, output: count, return: 110)
            #expect(checkLinearizable(increments + [read], model: PowersetModel(MaybeCounterModel())).isOK)
        }
        let tooMany = Operation(clientID: 9, input: .read, call: 100, output: 4, return: 110)
        #expect(checkLinearizable(increments + [tooMany], model: PowersetModel(MaybeCounterModel())).isIllegal)
        let backwards = [
            Operation(clientID: 0, input: .maybeIncrement, call: 0, output: nil, return: 5),
            Operation(clientID: 1, input: .read, call: 10, output: 1, return: 15),
            Operation(clientID: 2, input: .read, call: 20, output: 0, return: 25),
        ]
        #expect(checkLinearizable(backwards, model: PowersetModel(MaybeCounterModel())).isIllegal)
    }

    @Test("The check is bounded: a step limit or timeout that runs out answers unknown")
    func bounded() {
        // Many overlapping unknown writes and reads, one of a value never written: the search
        // has to rule out every order of the writes and reads, far too many to finish.
        var history = (1...40).map { RegisterOperation.unknown(clientID: $0, input: .put($0), call: 0) }
        history += (1...41).map { get($0, client: 100 + $0, 10, 20) }
        let limited = checkLinearizable(history, model: RegisterModel(), stepLimit: 500)
        #expect(limited.isUnknown, "\(limited)")
        let timedOut = checkLinearizable(history, model: RegisterModel(), timeout: .zero)
        #expect(timedOut.isUnknown, "\(timedOut)")
    }
}

@Suite("Linearizability checker: etcd KV models")
struct EtcdKVModelTests {
    static func op(
        _ input: EtcdKVInput, _ output: EtcdKVOutput?, client: Int = 0, _ call: Int64, _ ret: Int64
    ) -> KVOperation {
        KVOperation(clientID: client, input: input, call: call, output: output, return: ret)
    }

    @Test("Keys are checked apart; a stale read in one key is reported with that key's part")
    func perKeyPartitions() throws {
        var history = [
            Self.op(.put(key: "a", value: "1"), .put(), 0, 10),
            Self.op(.put(key: "b", value: "1"), .put(), 0, 10),
            Self.op(.get(key: "a"), .get(value: "1"), 20, 30),
            Self.op(.delete(key: "b"), .delete(deleted: 1), 20, 30),
            Self.op(.get(key: "b"), .get(value: nil), 40, 50),
            Self.op(.delete(key: "b"), .delete(deleted: 0), 40, 50),
        ]
        #expect(checkLinearizable(history, model: EtcdKVModel()).isOK)
        history.append(Self.op(.get(key: "b"), .get(value: "1"), client: 7, 60, 70))
        let violation = try #require(checkLinearizable(history, model: EtcdKVModel()).violation)
        #expect(violation.partition == 1)
        #expect(violation.partitionCount == 2)
        #expect(violation.operations.allSatisfy { $0.input.key == "b" })
        #expect(violation.blockedOperation.contains("client 7"))
    }

    @Test("A delete's count must match whether the key existed; a response of the wrong kind is illegal")
    func deleteCounts() {
        let put = Self.op(.put(key: "k", value: "v"), .put(), 0, 10)
        #expect(checkLinearizable([put, Self.op(.delete(key: "k"), .delete(deleted: 0), 20, 30)], model: EtcdKVModel()).isIllegal)
        #expect(checkLinearizable([put, Self.op(.delete(key: "k"), .delete(deleted: 1), 20, 30)], model: EtcdKVModel()).isOK)
        #expect(checkLinearizable([Self.op(.get(key: "k"), .put(), 0, 1)], model: EtcdKVModel()).isIllegal)
    }

    @Test("Unknown KV writes may or may not have taken effect")
    func unknownKVWrites() {
        let maybePut = KVOperation.unknown(clientID: 0, input: .put(key: "k", value: "x"), call: 0)
        let maybeDelete = KVOperation.unknown(clientID: 1, input: .delete(key: "j"), call: 0)
        let j = Self.op(.put(key: "j", value: "y"), .put(), client: 2, 0, 1)
        for (k, jValue) in [("x", "y"), (nil, "y"), ("x", nil), (nil, nil)] as [(String?, String?)] {
            let reads = [Self.op(.get(key: "k"), .get(value: k), 10, 20), Self.op(.get(key: "j"), .get(value: jValue), 10, 20)]
            #expect(checkLinearizable([maybePut, maybeDelete, j] + reads, model: EtcdKVModel()).isOK)
        }
    }

    @Test("The revision model follows etcd's single revision counter")
    func revisions() {
        let history = [
            Self.op(.put(key: "a", value: "1"), .put(revision: 2), 0, 10),
            Self.op(.put(key: "b", value: "1"), .put(revision: 3), 20, 30),
            Self.op(.get(key: "a"), .get(value: "1", modRevision: 2, revision: 3), 40, 50),
            Self.op(.delete(key: "c"), .delete(deleted: 0, revision: 3), 40, 50),
            Self.op(.delete(key: "a"), .delete(deleted: 1, revision: 4), 60, 70),
            Self.op(.get(key: "a"), .get(value: nil, modRevision: 0, revision: 4), 80, 90),
        ]
        #expect(checkLinearizable(history, model: EtcdRevisionKVModel()).isOK)
        #expect(checkLinearizable(history, model: EtcdKVModel()).isOK)
        // Revisions out of real-time order: fine key by key, not for the one counter.
        let reordered = [
            Self.op(.put(key: "a", value: "1"), .put(revision: 3), 0, 10),
            Self.op(.put(key: "b", value: "1"), .put(revision: 2), 20, 30),
        ]
        #expect(checkLinearizable(reordered, model: EtcdKVModel()).isOK)
        #expect(checkLinearizable(reordered, model: EtcdRevisionKVModel()).isIllegal)
        // A stale header revision on a read.
        let stale = Array(history.prefix(2)) + [Self.op(.get(key: "a"), .get(value: "1", modRevision: 2, revision: 2), 40, 50)]
        #expect(checkLinearizable(stale, model: EtcdRevisionKVModel()).isIllegal)
        // An unknown put that took effect explains a gap in the revisions.
        let gap = [
            KVOperation.unknown(clientID: 1, input: .put(key: "x", value: "?"), call: 0),
            Self.op(.put(key: "a", value: "1"), .put(revision: 3), 20, 30),
        ]
        #expect(checkLinearizable(gap, model: EtcdRevisionKVModel()).isOK)
    }

    @Test("An unknown put that a read observed is resolved to its revision and that read's return")
    func resolvingUnknownPuts() {
        let history = [
            KVOperation.unknown(clientID: 0, input: .put(key: "a", value: "1"), call: 0),
            KVOperation.unknown(clientID: 1, input: .put(key: "b", value: "1"), call: 0),
            Self.op(.get(key: "a"), .get(value: "1", modRevision: 2, revision: 2), client: 2, 10, 20),
            Self.op(.get(key: "a"), .get(value: "1", modRevision: 2, revision: 2), client: 3, 5, 30),
        ]
        let resolved = history.resolvingObservedUnknownPuts()
        #expect(resolved[0] == Self.op(.put(key: "a", value: "1"), .put(revision: 2), 0, 20))
        #expect(resolved[1] == history[1])
        #expect(Array(resolved[2...]) == Array(history[2...]))
        #expect(checkLinearizable(resolved, model: EtcdRevisionKVModel()).isOK)
    }

    @Test("Histories recorded from concurrent tasks against a locked store check out")
    func recorder() async {
        let recorder = HistoryRecorder<EtcdKVInput, EtcdKVOutput>()
        let store = LockedStore()
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    for step in 0..<50 {
                        let key = "k\(step % 3)"
                        let input: EtcdKVInput = step % 2 == 0 ? .put(key: key, value: "\(client)-\(step)") : .get(key: key)
                        let call = recorder.begin(client: client, input: input)
                        recorder.end(call, output: store.apply(input))
                    }
                }
            }
        }
        let pending = recorder.begin(client: 9, input: .put(key: "k0", value: "in flight"))
        _ = pending
        let history = recorder.history()
        #expect(history.count == 201)
        #expect(history.filter(\.outcomeUnknown).count == 1)
        let result = checkLinearizable(history, model: EtcdRevisionKVModel())
        #expect(result.isOK, "\(result)")
    }
}

/// A store that is linearizable by construction: one lock around etcd's semantics.
final class LockedStore: Sendable {
    private let state = Mutex(EtcdRevisionKVModel().initialState)

    func apply(_ input: EtcdKVInput) -> EtcdKVOutput {
        state.withLock { model in
            switch input {
            case .put(let key, let value):
                model.revision += 1
                model.entries[key] = EtcdRevisionKVModel.Entry(value: value, modRevision: model.revision)
                return .put(revision: model.revision)
            case .get(let key):
                let entry = model.entries[key]
                return .get(value: entry?.value, modRevision: entry?.modRevision ?? 0, revision: model.revision)
            case .delete(let key):
                guard model.entries.removeValue(forKey: key) != nil else {
                    return .delete(deleted: 0, revision: model.revision)
                }
                model.revision += 1
                return .delete(deleted: 1, revision: model.revision)
            }
        }
    }
}
