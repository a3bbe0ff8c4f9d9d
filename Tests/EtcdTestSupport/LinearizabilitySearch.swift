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
    // The operations linearized so far, each with the state before it.
    var calls: [(node: Int, stateBefore: Model.State)] = []
    var state = model.initialState
    var node = list.next[0]
    var furthestStuckNode = 0
    var longest: [(operation: Int, stateAfter: Model.State)] = []
    var blocked = -1
    var clockCountdown = SearchBudget.clockInterval

    while !list.isEmpty {
        guard budget.stepsLeft > 0 else { return .exhausted }
        budget.stepsLeft -= 1
        clockCountdown -= 1
        if clockCountdown == 0 {
            clockCountdown = SearchBudget.clockInterval
            if ContinuousClock.now >= budget.deadline { return .exhausted }
        }

        let index = list.operation[node]
        if list.returnNode[node] >= 0 {
            // A call: try to linearize its operation next.
            let operation = operations[index]
            if let nextState = model.step(state, input: operation.input, output: operation.output) {
                linearized.insert(index)
                if seen.insert(SearchPoint(linearized: linearized, state: nextState)).inserted {
                    calls.append((node, state))
                    state = nextState
                    list.lift(node)
                    node = list.next[0]
                    continue
                }
                linearized.remove(index)
            }
            node = list.next[node]
        } else {
            // The return of an operation not yet linearized: every candidate before it has
            // been tried, so undo the last choice.
            furthestStuckNode = max(furthestStuckNode, node)
            if calls.count > longest.count || blocked < 0 {
                longest = calls.enumerated().map { position, call in
                    let after = position + 1 < calls.count ? calls[position + 1].stateBefore : state
                    return (list.operation[call.node], after)
                }
                blocked = index
            }
            guard let last = calls.popLast() else {
                let prefix = (0..<operations.count)
                    .filter { list.callNode[$0] < furthestStuckNode }
                    .sorted { list.callNode[$0] < list.callNode[$1] }
                return .illegal(SearchTrace(prefix: prefix, longest: longest, blocked: blocked))
            }
            state = last.stateBefore
            linearized.remove(list.operation[last.node])
            list.unlift(last.node)
            node = list.next[last.node]
        }
    }
    return .linearizable
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
        var core = trace.prefix.map { part[$0] }
        var shrunk = false
        // The trace to describe, and the operations its indexes point into.
        var coreTrace = trace
        var traceSource = part
        if core.count <= Self.shrinkLimit {
            let shrinkDeadline = min(deadline, ContinuousClock.now.advanced(by: Self.shrinkTime))
            var budget = SearchBudget(deadline: shrinkDeadline, stepsLeft: .max)
            (core, shrunk) = shrink(core, budget: &budget)
            // Describe the search over the shrunk operations; it is small by now.
            var describeBudget = SearchBudget(deadline: ContinuousClock.now.advanced(by: Self.shrinkTime), stepsLeft: .max)
            if case .illegal(let shrunkTrace) = searchLinearization(core, model: model, budget: &describeBudget) {
                coreTrace = shrunkTrace
                traceSource = core
            } else {
                core = trace.prefix.map { part[$0] }
                shrunk = false
            }
        }
        let longest = coreTrace.longest.map { step in
            "\(line(traceSource[step.operation])) => \(model.describe(state: step.stateAfter))"
        }
        let blocked = coreTrace.blocked >= 0 ? line(traceSource[coreTrace.blocked]) : "none"

        var text = "not linearizable: part \(partition + 1) of \(partitionCount) (\(part.count) operations)\n"
        text += "these \(core.count) operations admit no linearization"
        text += shrunk ? " (shrunk):\n" : " (the prefix up to the furthest point reached):\n"
        if core.count > Self.listedLimit {
            text += "  ... \(core.count - Self.listedLimit) earlier operations\n"
        }
        for operation in core.suffix(Self.listedLimit) {
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
            partition: partition, partitionCount: partitionCount, partitionSize: part.count, operations: core,
            shrunk: shrunk, longestLinearization: longest, blockedOperation: blocked, description: text)
    }

    /// Drops operations one at a time, latest call first, keeping each drop after which the
    /// rest still admits no linearization (and cutting to the new failing prefix).
    ///
    /// - Returns: the operations kept, and whether every operation was tried.
    private func shrink(_ operations: [Operation], budget: inout SearchBudget) -> ([Operation], Bool) {
        var core = operations
        var position = core.count - 1
        while position >= 0 {
            var candidate = core
            candidate.remove(at: position)
            switch searchLinearization(candidate, model: model, budget: &budget) {
            case .illegal(let trace):
                // The failing prefix of a call-ordered list is a prefix of it.
                core = trace.prefix.map { candidate[$0] }
                position = min(position, core.count) - 1
            case .linearizable:
                position -= 1
            case .exhausted:
                return (core, false)
            }
        }
        return (core, true)
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
