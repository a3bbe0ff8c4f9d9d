/// A linearizability checker for histories recorded by cluster fault tests (issue 17).
///
/// It follows Porcupine (Athalye), which implements the Wing & Gong search with Lowe's
/// memoization: operations are linearized one at a time in an order consistent with real time,
/// every (set of linearized operations, model state) pair reached is remembered so no subtree
/// is searched twice, and the search backtracks when an operation's return is reached before
/// the operation could be linearized. A model may split the history into independent parts
/// (per key, for a key-value store), each checked alone: linearizability is compositional, so
/// the history is linearizable exactly when every part is.
///
/// Operations whose outcome the client never learned (a timeout, a lost connection: a write
/// that may or may not have happened) are recorded with `output == nil` and a return time of
/// ``HistoryOperation/never``. The model's `step` must accept them with any state they could
/// leave behind as if they took effect (a put sets the value, a get changes nothing). That they
/// may also *not* have taken effect needs nothing more: with a return at infinity they can be
/// linearized after every other operation, where their effect is observed by nobody. This is
/// how etcd's robustness tests and Jepsen treat indeterminate operations.

/// A sequential specification that ``checkLinearizable(_:model:timeout:stepLimit:)`` checks a
/// concurrent history against.
public protocol LinearizabilityModel {
    associatedtype State: Hashable
    associatedtype Input
    associatedtype Output

    /// The state before any operation.
    var initialState: State { get }

    /// Applies one operation to `state`.
    ///
    /// - Parameter output: what the client saw, or `nil` if the outcome is unknown; then the
    ///   step must accept any response and return the state as if the operation took effect.
    /// - Returns: the next state, or `nil` if `output` is not a legal response in `state`.
    func step(_ state: State, input: Input, output: Output?) -> State?

    /// Splits a history into parts that can be checked alone (P-compositionality, such as one
    /// part per key). The default keeps the history whole.
    func partition(_ history: [HistoryOperation<Input, Output>]) -> [[HistoryOperation<Input, Output>]]

    /// One line for an operation in an explanation.
    func describe(input: Input, output: Output?) -> String

    /// One line for a state in an explanation.
    func describe(state: State) -> String
}

extension LinearizabilityModel {
    public func partition(_ history: [HistoryOperation<Input, Output>]) -> [[HistoryOperation<Input, Output>]] {
        [history]
    }

    public func describe(input: Input, output: Output?) -> String {
        guard let output else { return "\(input) -> unknown" }
        return "\(input) -> \(output)"
    }

    public func describe(state: State) -> String { String(describing: state) }
}

/// A specification whose operations may lead to several states (Porcupine's nondeterministic
/// models); check it through ``PowersetModel``.
public protocol NondeterministicLinearizabilityModel {
    associatedtype State: Hashable
    associatedtype Input
    associatedtype Output

    var initialStates: [State] { get }

    /// Every state the operation may lead to; empty if `output` is illegal in `state`.
    func step(_ state: State, input: Input, output: Output?) -> [State]

    func partition(_ history: [HistoryOperation<Input, Output>]) -> [[HistoryOperation<Input, Output>]]
    func describe(input: Input, output: Output?) -> String
    func describe(state: State) -> String
}

extension NondeterministicLinearizabilityModel {
    public func partition(_ history: [HistoryOperation<Input, Output>]) -> [[HistoryOperation<Input, Output>]] {
        [history]
    }

    public func describe(input: Input, output: Output?) -> String {
        guard let output else { return "\(input) -> unknown" }
        return "\(input) -> \(output)"
    }

    public func describe(state: State) -> String { String(describing: state) }
}

/// Turns a nondeterministic model into a deterministic one whose state is the set of states
/// the base model may be in (the powerset construction Porcupine uses).
public struct PowersetModel<Base: NondeterministicLinearizabilityModel>: LinearizabilityModel {
    public typealias State = Set<Base.State>
    public typealias Input = Base.Input
    public typealias Output = Base.Output

    public let base: Base

    public init(_ base: Base) { self.base = base }

    public var initialState: Set<Base.State> { Set(base.initialStates) }

    public func step(_ state: Set<Base.State>, input: Input, output: Output?) -> Set<Base.State>? {
        var next = Set<Base.State>()
        for current in state {
            next.formUnion(base.step(current, input: input, output: output))
        }
        return next.isEmpty ? nil : next
    }

    public func partition(_ history: [HistoryOperation<Input, Output>]) -> [[HistoryOperation<Input, Output>]] {
        base.partition(history)
    }

    public func describe(input: Input, output: Output?) -> String { base.describe(input: input, output: output) }

    public func describe(state: Set<Base.State>) -> String {
        "{" + state.map { base.describe(state: $0) }.sorted().joined(separator: ", ") + "}"
    }
}

/// One operation of a history: who called what, when, and what came back.
///
/// Times are nanoseconds on one clock shared by all clients (``HistoryRecorder`` uses a
/// `ContinuousClock` and its own origin). Operations that overlap in time may be linearized in
/// either order; equal times count as overlapping.
public struct HistoryOperation<Input, Output> {
    /// The return time of an operation whose outcome is unknown.
    public static var never: Int64 { .max }

    public var clientID: Int
    public var input: Input
    public var callTime: Int64
    /// What the client saw, or `nil` if it never learned the outcome.
    public var output: Output?
    public var returnTime: Int64

    /// - Parameters:
    ///   - output: `nil` if the outcome is unknown. A write with an unknown outcome must
    ///     return at ``never``: it may take effect at any time after its call. A read with an
    ///     unknown outcome changes nothing, so its return may be left at the time it was given
    ///     up, which keeps the search smaller.
    public init(clientID: Int, input: Input, call callTime: Int64, output: Output?, return returnTime: Int64) {
        precondition(callTime <= returnTime, "an operation returns before it is called: \(callTime) > \(returnTime)")
        self.clientID = clientID
        self.input = input
        self.callTime = callTime
        self.output = output
        self.returnTime = returnTime
    }

    /// An operation whose outcome is unknown: it may take effect at any time after its call.
    public static func unknown(clientID: Int, input: Input, call callTime: Int64) -> HistoryOperation {
        HistoryOperation(clientID: clientID, input: input, call: callTime, output: nil, return: never)
    }

    public var outcomeUnknown: Bool { output == nil }
}

extension HistoryOperation: Sendable where Input: Sendable, Output: Sendable {}
extension HistoryOperation: Equatable where Input: Equatable, Output: Equatable {}

/// The verdict of ``checkLinearizable(_:model:timeout:stepLimit:)``.
public enum LinearizabilityResult<Input, Output>: CustomStringConvertible {
    /// Every part of the history has a linearization.
    case ok
    /// Some part has none.
    case illegal(LinearizabilityViolation<Input, Output>)
    /// The time or step budget ran out first.
    case unknown(reason: String)

    public var isOK: Bool {
        if case .ok = self { return true }
        return false
    }

    public var isIllegal: Bool {
        if case .illegal = self { return true }
        return false
    }

    public var isUnknown: Bool {
        if case .unknown = self { return true }
        return false
    }

    public var violation: LinearizabilityViolation<Input, Output>? {
        if case .illegal(let violation) = self { return violation }
        return nil
    }

    public var description: String {
        switch self {
        case .ok: return "linearizable"
        case .illegal(let violation): return violation.description
        case .unknown(let reason): return "unknown: \(reason)"
        }
    }
}

/// Why a history is not linearizable.
public struct LinearizabilityViolation<Input, Output>: CustomStringConvertible {
    /// Which part of the model's partition failed (0-based), of how many.
    public let partition: Int
    public let partitionCount: Int
    /// How many operations that part had.
    public let partitionSize: Int
    /// Operations of that part that admit no linearization by themselves, by call time: the
    /// operations called before the furthest point any linearization reached, then shrunk by
    /// dropping one operation at a time while the rest stayed non-linearizable.
    public let operations: [HistoryOperation<Input, Output>]
    /// Whether the shrinking ran to the end (it is skipped for long prefixes and bounded in time).
    public let shrunk: Bool
    /// The longest linearization the search found for ``operations``, one line per operation
    /// with the state after it.
    public let longestLinearization: [String]
    /// The operation whose return the longest linearization could not get past.
    public let blockedOperation: String
    public let description: String
}

/// Checks that `history` is linearizable with respect to `model`.
///
/// Bounded: the search gives up after `timeout` of wall time or `stepLimit` search steps over
/// all parts, and answers ``LinearizabilityResult/unknown(reason:)``. The first part found
/// illegal ends the check.
public func checkLinearizable<Model: LinearizabilityModel>(
    _ history: [HistoryOperation<Model.Input, Model.Output>],
    model: Model,
    timeout: Duration = .seconds(10),
    stepLimit: Int = .max
) -> LinearizabilityResult<Model.Input, Model.Output> {
    let clock = ContinuousClock()
    var budget = SearchBudget(deadline: clock.now.advanced(by: timeout), stepsLeft: stepLimit)
    let parts = model.partition(history)
    for (index, part) in parts.enumerated() {
        switch searchLinearization(part, model: model, budget: &budget) {
        case .linearizable:
            continue
        case .exhausted:
            return .unknown(
                reason: "the search ran out of its budget (\(timeout), \(stepLimit) steps) in part \(index + 1) "
                    + "of \(parts.count) (\(part.count) operations)")
        case .illegal(let trace):
            let explainer = ViolationExplainer(model: model, partition: index, partitionCount: parts.count)
            return .illegal(explainer.explain(part, trace: trace, deadline: budget.deadline))
        }
    }
    return .ok
}
