import Foundation
import Testing

/// Runs every `Testdata/*.txt` interaction script as its own test case and compares each
/// command's output with the golden output under it. `REWRITE_TESTDATA=1` writes the actual
/// output back into the files instead; review the diff before committing it.
@Suite struct InteractionTests {
    static let testdataDirectory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Interaction/
        .deletingLastPathComponent()  // EtcdRaftTests/
        .appendingPathComponent("Testdata")

    static var scriptNames: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: testdataDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    static var rewriting: Bool { ProcessInfo.processInfo.environment["REWRITE_TESTDATA"] == "1" }

    @Test("the scripts directory has scenarios")
    func scriptsExist() {
        #expect(!Self.scriptNames.isEmpty, "no scripts in \(Self.testdataDirectory.path)")
    }

    /// Rewriting must keep everything but the outputs: rendering a script with its own expected
    /// outputs gives back the file byte for byte.
    @Test("a script renders back to itself", arguments: scriptNames)
    func roundTrip(scriptName: String) throws {
        let url = Self.testdataDirectory.appendingPathComponent(scriptName)
        let contents = try String(contentsOf: url, encoding: .utf8)
        let script = try InteractionScript(path: "Testdata/\(scriptName)", contents: contents)
        let expected: [[String]] = script.chunks.compactMap { chunk in
            guard case .command(_, let expected) = chunk else { return nil }
            return expected
        }
        #expect(script.rendered(withOutputs: expected) == contents)
    }

    @Test("interaction script", arguments: scriptNames)
    func run(scriptName: String) throws {
        let url = Self.testdataDirectory.appendingPathComponent(scriptName)
        let contents = try String(contentsOf: url, encoding: .utf8)
        let script = try InteractionScript(path: "Testdata/\(scriptName)", contents: contents)
        let environment = InteractionEnvironment()
        var outputs: [[String]] = []
        for chunk in script.chunks {
            guard case .command(let command, let expected) = chunk else { continue }
            let actual: [String]
            do {
                actual = try environment.run(command)
            } catch {
                Issue.record("\(command.location): \(command.source): \(error)")
                actual = ["error: \(error)"]
            }
            outputs.append(actual)
            if !Self.rewriting && actual != expected {
                Issue.record(
                    """
                    \(command.location): output of `\(command.source)` differs
                    expected:
                    \(expected.joined(separator: "\n"))
                    actual:
                    \(actual.joined(separator: "\n"))
                    """
                )
            }
        }
        if Self.rewriting {
            try script.rendered(withOutputs: outputs).write(to: url, atomically: true, encoding: .utf8)
        }
    }
}
