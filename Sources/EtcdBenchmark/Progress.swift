import Foundation
import Synchronization

/// A progress bar on stderr, drawn only when stderr is a terminal, from a counter the clients bump.
final class Progress: Sendable {
    let completed = Atomic<Int>(0)
    private let finished = Atomic<Bool>(false)
    let total: Int
    let enabled: Bool

    init(total: Int) {
        self.total = total
        enabled = isatty(STDERR_FILENO) == 1 && total > 0
    }

    @inline(__always)
    func increment() {
        completed.add(1, ordering: .relaxed)
    }

    /// Ends `run()` at its next redraw.
    func finish() {
        finished.store(true, ordering: .relaxed)
    }

    /// Redraws every 200 ms until `finish()`, then draws the final state and ends the line.
    func run() async {
        guard enabled else { return }
        while !finished.load(ordering: .relaxed) && !Task.isCancelled {
            draw()
            try? await Task.sleep(for: .milliseconds(200))
        }
        draw()
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw() {
        let done = min(completed.load(ordering: .relaxed), total)
        let width = 50
        let filled = total > 0 ? done * width / total : 0
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        let percent = total > 0 ? Double(done) * 100 / Double(total) : 0
        let line = "\r \(done) / \(total) [\(bar)] \(String(format: "%.2f", percent))%"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
