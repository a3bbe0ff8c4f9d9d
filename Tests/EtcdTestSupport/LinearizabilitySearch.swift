/// The search behind ``checkLinearizable(_:model:timeout:stepLimit:)``: Porcupine's version of
/// the Wing & Gong algorithm with Lowe's memoization, over one part of a history.

/// Wall time and steps left to the whole check; every search step spends one.
struct SearchBudget {
    let deadline: ContinuousClock.Instant
    var stepsLeft: Int

    /// Reading the clock costs more than a step, so it is read once every this many steps.
    static let clockInterval = 1024
}

/// How a search ended.
enum SearchOutcome<State> {
    case linearizable
    case illegal(SearchTrace<State>)
    case exhausted
}

/// What an unsuccessful search learned, as indexes into the operations it was given.
struct SearchTrace<State> {
    /// Operations whose call comes before the furthest return any linearization was stuck
    /// at, in call order. No operation called later was ever tried, so these alone admit no
    /// linearization either.
    var prefix: [Int]
    /// The longest linearization found, each operation with the state after it.
    var longest: [(operation: Int, stateAfter: State)]
    /// The operation whose return stopped the longest linearization.
    var blocked: Int
}

/// A fixed-size set of operation indexes, one bit each.
struct OperationBitset: Hashable {
    private(set) var words: [UInt64]

    init(count: Int) { words = Array(repeating: 0, count: (count + 63) / 64) }

    mutating func insert(_ index: Int) { words[index >> 6] |= 1 << UInt64(index & 63) }

    mutating func remove(_ index: Int) { words[index >> 6] &= ~(1 << UInt64(index & 63)) }
}

/// A memoized point of the search: which operations are linearized, and the state they led to.
/// Two paths reaching the same point have the same future, so the second is cut.
private struct SearchPoint<State: Hashable>: Hashable {
    var linearized: OperationBitset
    var state: State
}

/// Calls and returns in time order, as a doubly linked list over array slots (node 0 is the
/// head, node `2n + 1` the tail, nodes in between are the entries in sorted order, so a
/// node's number is also its position in time). Linearizing an operation lifts its call and
/// return out of the list; backtracking puts them back, in the reverse order (dancing links).
private struct EntryList {
    var next: [Int]
    var previous: [Int]
    /// For each node, its operation (-1 for head and tail).
    var operation: [Int]
    /// For a call node, its return node; -1 for return nodes.
    var returnNode: [Int]
    /// For each operation, its call node.
    var callNode: [Int]
    let tail: Int

    init<Input, Output>(_ operations: [HistoryOperation<Input, Output>]) {
        let count = operations.count
        // Calls sort before returns at equal times, so touching operations count as
        // overlapping (the permissive reading, as Porcupine's); ties otherwise keep input order.
        var entries: [(time: Int64, isReturn: Bool, operation: Int)] = []
        entries.reserveCapacity(2 * count)
        for (index, operation) in operations.enumerated() {
            entries.append((operation.callTime, false, index))
            entries.append((operation.returnTime, true, index))
        }
        entries.sort { left, right in
            if left.time != right.time { return left.time < right.time }
            if left.isReturn != right.isReturn { return !left.isReturn }
            return left.operation < right.operation
        }
        tail = 2 * count + 1
        next = Array(1...(tail + 1))
        previous = Array(-1..<tail)
        operation = Array(repeating: -1, count: tail + 1)
        returnNode = Array(repeating: -1, count: tail + 1)
        callNode = Array(repeating: 0, count: count)
        var returnNodeOfOperation = Array(repeating: 0, count: count)
        for (position, entry) in entries.enumerated() {
            let node = position + 1
            operation[node] = entry.operation
            if entry.isReturn {
                returnNodeOfOperation[entry.operation] = node
            } else {
                callNode[entry.operation] = node
            }
        }
        for index in 0..<count {
            returnNode[callNode[index]] = returnNodeOfOperation[index]
        }
    }

    var isEmpty: Bool { next[0] == tail }

    mutating func lift(_ call: Int) {
        let ret = returnNode[call]
        next[previous[call]] = next[call]
        previous[next[call]] = previous[call]
        next[previous[ret]] = next[ret]
        previous[next[ret]] = previous[ret]
    }

    mutating func unlift(_ call: Int) {
        let ret = returnNode[call]
        next[previous[ret]] = ret
        previous[next[ret]] = ret
        next[previous[call]] = call
        previous[next[call]] = call
    }
}

/// Searches for a linearization of `operations` (one part of a history).
func searchLinearization<Model: LinearizabilityModel>(
    _ operations: [HistoryOperation<Model.Input, Model.Output>],
    model: Model,
    budget: inout SearchBudget
) -> SearchOutcome<Model.State> {
    if operations.isEmpty { return .linearizable }
    var list = EntryList(operations)
    var linearized = OperationBitset(count: operations.count)
    var seen = Set<SearchPoint<Model.State>>()
    // The operations linearized so far, each with the state before it and where the search
    // resumes when it is undone.
    var calls: [SearchFrame<Model.State>] = []
    var state = model.initialState
    var node = list.next[0]
    // Operations whose outcome is unknown stay candidates to the end of the history. Tried in
    // time order, as Porcupine does, they would be linearized early at every point and every
    // subset of them explored before anything else. So a scan sets them aside and tries them
    // only after the known candidates of the same point: the same candidates, hence the same
    // verdict, in an order that usually finds a linearization without backtracking.
    var deferred: [Int] = []
    // -1 while scanning the list, else the next set-aside operation to try.
    var deferredNext = -1
    var furthestStuckNode = 0
    var longest: [(operation: Int, stateAfter: Model.State)] = []
    var blocked = -1
    var clockCountdown = SearchBudget.clockInterval

    /// Linearizes the operation of call `node` next if the model allows it and the point it
    /// leads to is new.
    func linearize(_ node: Int, resumeDeferred: Int) -> Bool {
        let index = list.operation[node]
        let operation = operations[index]
        guard let nextState = model.step(state, input: operation.input, output: operation.output) else { return false }
        linearized.insert(index)
        guard seen.insert(SearchPoint(linearized: linearized, state: nextState)).inserted else {
            linearized.remove(index)
            return false
        }
        calls.append(SearchFrame(node: node, stateBefore: state, deferred: deferred, deferredNext: resumeDeferred))
        state = nextState
        list.lift(node)
        deferred = []
        deferredNext = -1
        return true
    }

    while !list.isEmpty {
        guard budget.stepsLeft > 0 else { return .exhausted }
        budget.stepsLeft -= 1
        clockCountdown -= 1
        if clockCountdown == 0 {
            clockCountdown = SearchBudget.clockInterval
            if ContinuousClock.now >= budget.deadline { return .exhausted }
        }

        if deferredNext < 0 {
            if list.returnNode[node] >= 0 {
                // A call: try to linearize its operation next.
                if operations[list.operation[node]].output == nil {
                    deferred.append(node)
                } else if linearize(node, resumeDeferred: -1) {
                    node = list.next[0]
                    continue
                }
                node = list.next[node]
                continue
            }
            // The return of an operation not yet linearized: every known candidate before it
            // has been tried.
            furthestStuckNode = max(furthestStuckNode, node)
            if calls.count > longest.count || blocked < 0 {
                longest = calls.enumerated().map { position, call in
                    let after = position + 1 < calls.count ? calls[position + 1].stateBefore : state
                    return (list.operation[call.node], after)
                }
                blocked = list.operation[node]
            }
            deferredNext = 0
        }
        if deferredNext < deferred.count {
            if linearize(deferred[deferredNext], resumeDeferred: deferredNext) {
                node = list.next[0]
            } else {
                deferredNext += 1
            }
            continue
        }
        // Every candidate at this point has been tried: undo the last choice.
        guard let last = calls.popLast() else {
            let prefix = (0..<operations.count)
                .filter { list.callNode[$0] < furthestStuckNode }
                .sorted { list.callNode[$0] < list.callNode[$1] }
            return .illegal(SearchTrace(prefix: prefix, longest: longest, blocked: blocked))
        }
        state = last.stateBefore
        linearized.remove(list.operation[last.node])
        list.unlift(last.node)
        deferred = last.deferred
        if last.deferredNext < 0 {
            node = list.next[last.node]
            deferredNext = -1
        } else {
            deferredNext = last.deferredNext + 1
        }
    }
    return .linearizable
}

/// One linearized operation on the search's stack.
private struct SearchFrame<State> {
    var node: Int
    var stateBefore: State
    /// The scan's set-aside operations when this one was chosen, and which of them this one
    /// was (-1 if it was chosen while scanning the list).
    var deferred: [Int]
    var deferredNext: Int
}

/// Turns a search trace into a ``LinearizabilityViolation``: shrinks the failing operations
/// and describes them with the model.
struct ViolationExplainer<Model: LinearizabilityModel> {
    typealias Operation = HistoryOperation<Model.Input, Model.Output>

    let model: Model
    let partition: Int
    let partitionCount: Int

    /// Prefixes longer than this are reported as they are: each shrinking step is a search.
    static var shrinkLimit: Int { 200 }
    /// The most time shrinking may take, within the check's own deadline.
    static var shrinkTime: Duration { .seconds(1) }
    /// The most operations an explanation lists.
    static var listedLimit: Int { 40 }

    func explain(_ part: [Operation], trace: SearchTrace<Model.State>, deadline: ContinuousClock.Instant)
        -> LinearizabilityViolation<Model.Input, Model.Output>
    {
        var core = trace
        var shrunk = false
        if trace.prefix.count <= Self.shrinkLimit {
            let shrinkDeadline = min(deadline, ContinuousClock.now.advanced(by: Self.shrinkTime))
            var budget = SearchBudget(deadline: shrinkDeadline, stepsLeft: .max)
            (core, shrunk) = shrink(part, trace: trace, budget: &budget)
        }
        let operations = core.prefix.map { part[$0] }
        let longest = core.longest.map { step in
            "\(line(part[step.operation])) => \(model.describe(state: step.stateAfter))"
        }
        let blocked = core.blocked >= 0 ? line(part[core.blocked]) : "none"

        var text = "not linearizable: part \(partition + 1) of \(partitionCount) (\(part.count) operations)\n"
        text += "these \(operations.count) operations admit no linearization"
        text += shrunk ? " (shrunk):\n" : " (the prefix up to the furthest point reached):\n"
        if operations.count > Self.listedLimit {
            text += "  ... \(operations.count - Self.listedLimit) earlier operations\n"
        }
        for operation in operations.suffix(Self.listedLimit) {
            text += "  \(line(operation))\n"
        }
        text += "longest linearization found (\(longest.count) operations):\n"
        if longest.count > Self.listedLimit {
            text += "  ... \(longest.count - Self.listedLimit) earlier operations\n"
        }
        for step in longest.suffix(Self.listedLimit) {
            text += "  \(step)\n"
        }
        text += "after which this operation could not be linearized before its return:\n  \(blocked)"
        return LinearizabilityViolation(
            partition: partition, partitionCount: partitionCount, partitionSize: part.count, operations: operations,
            shrunk: shrunk, longestLinearization: longest, blockedOperation: blocked, description: text)
    }

    /// Drops operations, latest calls first, in runs of a shrinking length (as delta
    /// debugging does, so a long prefix loses most of its operations in few searches) down to
    /// one at a time. A drop is kept only if the history admits no linearization even with
    /// those operations' outcomes made unknown (so each could have taken effect at any time
    /// after its call, or never), and the rest still fails at the same operation. Merely
    /// checking that the rest fails would drop the write a stale read observed and leave a
    /// read of a value never written: a violation of our making. After each drop the
    /// operations are cut to the new failing prefix.
    ///
    /// - Returns: the trace of the last failing search, as indexes into `part`, and whether
    ///   every operation was tried.
    private func shrink(_ part: [Operation], trace: SearchTrace<Model.State>, budget: inout SearchBudget)
        -> (SearchTrace<Model.State>, Bool)
    {
        var core = trace
        var run = max(1, core.prefix.count / 8)
        while true {
            var upper = core.prefix.count
            while upper > 0 {
                let lower = max(0, upper - run)
                switch drop(lower..<upper, from: core, part: part, budget: &budget) {
                case .kept(let shrunk):
                    core = shrunk
                    upper = min(lower, core.prefix.count)
                case .needed:
                    upper = lower
                case .exhausted:
                    return (core, false)
                }
            }
            if run == 1 { return (core, true) }
            run /= 2
        }
    }

    private enum DropOutcome {
        case kept(SearchTrace<Model.State>)
        case needed
        case exhausted
    }

    /// Tries to drop the operations at `positions` of `core.prefix` (see `shrink`).
    private func drop(
        _ positions: Range<Int>, from core: SearchTrace<Model.State>, part: [Operation], budget: inout SearchBudget
    ) -> DropOutcome {
        var relaxed = core.prefix.map { part[$0] }
        var relaxedAny = false
        for position in positions where !relaxed[position].outcomeUnknown {
            let operation = relaxed[position]
            relaxed[position] = .unknown(clientID: operation.clientID, input: operation.input, call: operation.callTime)
            relaxedAny = true
        }
        if relaxedAny {
            switch searchLinearization(relaxed, model: model, budget: &budget) {
            case .illegal: break
            case .linearizable: return .needed
            case .exhausted: return .exhausted
            }
        }
        var candidate = core.prefix
        candidate.removeSubrange(positions)
        switch searchLinearization(candidate.map { part[$0] }, model: model, budget: &budget) {
        case .illegal(let found) where candidate[found.blocked] == core.blocked:
            // The operations stay in call order, so the new failing prefix is a prefix.
            return .kept(
                SearchTrace(
                    prefix: found.prefix.map { candidate[$0] },
                    longest: found.longest.map { (candidate[$0.operation], $0.stateAfter) },
                    blocked: core.blocked))
        case .illegal, .linearizable:
            return .needed
        case .exhausted:
            return .exhausted
        }
    }

    private func line(_ operation: Operation) -> String {
        let call = Self.format(operation.callTime)
        let ret = Self.format(operation.returnTime)
        return "client \(operation.clientID) [\(call), \(ret)] \(model.describe(input: operation.input, output: operation.output))"
    }

    private static func format(_ time: Int64) -> String {
        time == Operation.never ? "never" : String(time)
    }
}
