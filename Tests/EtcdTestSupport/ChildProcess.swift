public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a child process ended.
public struct ProcessExit: Sendable, Hashable, CustomStringConvertible {
    /// The exit code, or the signal number when ``signaled`` is true.
    public var status: Int32
    /// Whether a signal ended the process.
    public var signaled: Bool

    public init(status: Int32, signaled: Bool) {
        self.status = status
        self.signaled = signaled
    }

    public var description: String { signaled ? "killed by signal \(status)" : "exit code \(status)" }
}

/// One child process started with Foundation's `Process`, whose standard output and error go to
/// files (files never fill up and block the child the way an unread pipe does).
///
/// The process is ended by ``terminate(gracePeriod:)``: SIGTERM, then SIGKILL when it has not exited
/// within the grace period. Waiting never depends on the caller's task staying uncancelled, so a
/// cancelled test still stops everything it started.
public final class ChildProcess: Sendable {
    /// The process identifier, for messages.
    public let pid: Int32
    /// The command line, for messages.
    public let commandLine: String

    // Kept alive for its termination handler, which delivers the exit status into `exit`.
    private let process: Process
    private let exit: ExitLatch

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - standardOutput: a file that receives standard output (created or truncated).
    ///   - standardError: a file that receives standard error; the same URL as `standardOutput`
    ///     interleaves both into one file.
    ///   - standardInput: a file to read standard input from, or `nil` for /dev/null.
    ///   - standardInputPipe: a pipe whose read end becomes standard input, for a child that reads
    ///     commands while it runs (`etcdctl watch -i`); the caller writes to its write end. Give
    ///     at most one of `standardInput` and `standardInputPipe`.
    public init(
        executable: URL,
        arguments: [String],
        environment: [String: String]? = nil,
        standardOutput: URL,
        standardError: URL,
        standardInput: URL? = nil,
        standardInputPipe: Pipe? = nil
    ) throws {
        precondition(
            standardInput == nil || standardInputPipe == nil,
            "standard input is either a file or a pipe, got both for \(executable.path)"
        )
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }

        _ = FileManager.default.createFile(atPath: standardOutput.path, contents: nil)
        let outputHandle = try FileHandle(forWritingTo: standardOutput)
        let errorHandle: FileHandle
        if standardError == standardOutput {
            errorHandle = outputHandle
        } else {
            _ = FileManager.default.createFile(atPath: standardError.path, contents: nil)
            errorHandle = try FileHandle(forWritingTo: standardError)
        }
        let inputHandle = try standardInput.map { try FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
        defer {
            // The child holds its own copies of the descriptors once it runs.
            try? outputHandle.close()
            if errorHandle !== outputHandle { try? errorHandle.close() }
            if inputHandle !== FileHandle.nullDevice { try? inputHandle.close() }
        }
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        if let standardInputPipe {
            // Writing to a pipe whose reader has exited raises SIGPIPE, whose default action would
            // end the whole test process; ignored, the write fails with EPIPE instead, which the
            // writer reports like any other error.
            _ = signal(SIGPIPE, SIG_IGN)
            process.standardInput = standardInputPipe
        } else {
            process.standardInput = inputHandle
        }

        let exit = ExitLatch()
        process.terminationHandler = { finished in
            exit.open(
                ProcessExit(status: finished.terminationStatus, signaled: finished.terminationReason == .uncaughtSignal)
            )
        }
        try process.run()

        self.process = process
        self.exit = exit
        self.pid = process.processIdentifier
        self.commandLine = ([executable.path] + arguments).joined(separator: " ")
    }

    /// How the process ended, or `nil` while it runs.
    public var exitStatus: ProcessExit? { exit.value }

    /// Waits until the process exits.
    public func waitForExit() async -> ProcessExit {
        await exit.waitIgnoringCancellation()
    }

    /// Waits until the process exits or `timeout` passes; returns `nil` on timeout.
    public func waitForExit(timeout: Duration) async -> ProcessExit? {
        await withTaskGroup(of: ProcessExit?.self) { group in
            group.addTask { await self.exit.waitUnlessCancelled() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            // Whichever finishes first decides; cancelling releases the other child at once, so
            // the group never outlives the timeout.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? self.exit.value
        }
    }

    /// Sends `signal` to the process if it still runs.
    public func send(signal: Int32) {
        guard exit.value == nil else { return }
        sendSignal(signal, to: pid)
    }

    /// Ends the process: SIGTERM, then SIGKILL if it has not exited after `gracePeriod`.
    /// Returns how it ended. Safe to call more than once and from a cancelled task.
    @discardableResult
    public func terminate(gracePeriod: Duration = .seconds(10)) async -> ProcessExit {
        if let status = exit.value { return status }
        send(signal: SIGTERM)
        if let status = await waitForExit(timeout: gracePeriod) { return status }
        send(signal: SIGKILL)
        return await exit.waitIgnoringCancellation()
    }

    /// Ends the process at once with SIGKILL (a crash, as far as the process can tell).
    @discardableResult
    public func kill() async -> ProcessExit {
        send(signal: SIGKILL)
        return await exit.waitIgnoringCancellation()
    }
}

/// `kill(2)`, out of reach of ``ChildProcess/kill()``'s name.
private func sendSignal(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}

/// Holds a process's exit status once known and wakes everyone waiting for it.
///
/// ``waitUnlessCancelled()`` lets the timeout race in ``ChildProcess`` stop waiting;
/// ``waitIgnoringCancellation()`` only returns the real status, so a caller that must see the exit
/// (after SIGKILL) cannot be cut short by its task's cancellation.
final class ExitLatch: Sendable {
    private struct State {
        var value: ProcessExit?
        var waiters: [UInt64: CheckedContinuation<ProcessExit?, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    var value: ProcessExit? { state.withLock { $0.value } }

    func open(_ value: ProcessExit) {
        let waiters = state.withLock { state -> [CheckedContinuation<ProcessExit?, Never>] in
            state.value = value
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: value) }
    }

    /// Waits for the exit status, ignoring cancellation.
    func waitIgnoringCancellation() async -> ProcessExit {
        while true {
            if let value = await waitOrCancel(cancellable: false) { return value }
        }
    }

    /// Waits for the exit status; returns `nil` early when the task is cancelled.
    func waitUnlessCancelled() async -> ProcessExit? {
        await waitOrCancel(cancellable: true)
    }

    private func waitOrCancel(cancellable: Bool) async -> ProcessExit? {
        let id = state.withLock { state -> UInt64 in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProcessExit?, Never>) in
                let immediate: ProcessExit?? = state.withLock { state in
                    if let value = state.value { return .some(value) }
                    if cancellable && Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            guard cancellable else { return }
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }
}
