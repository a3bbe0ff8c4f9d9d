/// A scenario file: comments and commands, each command followed by `----` and its expected
/// output, in the spirit of etcd-io/raft's datadriven `testdata/*.txt`.
///
/// ```
/// # Comments and blank lines are kept as they are when the file is rewritten.
/// add-nodes 3 voters=(1,2,3) index=2
/// ----
/// ok
/// ```
///
/// The expected output runs up to the next blank line (or the end of the file), so a command's
/// output never contains a blank line; an empty output is written as `ok`.
struct InteractionScript {
    /// One piece of the file, in order: verbatim text, or a command with its expected output.
    enum Chunk {
        case text(String)
        case command(InteractionCommand, expected: [String])
    }

    let path: String
    var chunks: [Chunk]

    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    init(path: String, contents: String) throws(ParseError) {
        self.path = path
        chunks = []
        var lines = contents.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // A file ending in a newline splits into a final empty string that is no line of its own.
        if lines.last == "" { lines.removeLast() }
        var position = 0
        while position < lines.count {
            let line = lines[position]
            let trimmed = line.interactionTrimmed()
            if trimmed.isEmpty || trimmed.hasPrefix("#") {
                chunks.append(.text(line))
                position += 1
                continue
            }
            let lineNumber = position + 1
            let command = try InteractionCommand(parsing: trimmed, line: lineNumber, file: path)
            position += 1
            guard position < lines.count, lines[position] == "----" else {
                throw ParseError(description: "\(path):\(lineNumber): expected ---- after the command line")
            }
            position += 1
            var expected: [String] = []
            while position < lines.count, !lines[position].interactionTrimmed().isEmpty {
                expected.append(lines[position])
                position += 1
            }
            chunks.append(.command(command, expected: expected))
        }
    }

    /// The file's text with `actual` output (one entry per command, in order) in place of the
    /// expected output.
    func rendered(withOutputs actual: [[String]]) -> String {
        var lines: [String] = []
        var commandNumber = 0
        for chunk in chunks {
            switch chunk {
            case .text(let text):
                lines.append(text)
            case .command(let command, let expected):
                lines.append(command.source)
                lines.append("----")
                lines.append(contentsOf: commandNumber < actual.count ? actual[commandNumber] : expected)
                commandNumber += 1
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// One command line: a verb, then positional words and `key=value` arguments. A value may be a
/// parenthesised list, `voters=(1,2,3)`, and a word may be quoted, `propose 1 "a b"`.
struct InteractionCommand {
    struct Argument: Equatable {
        /// Empty for a positional argument.
        var key: String
        var values: [String]
    }

    let source: String
    let verb: String
    let arguments: [Argument]
    /// Where the command is, `file:line`, for failure messages.
    let location: String

    init(parsing line: String, line lineNumber: Int, file: String) throws(InteractionScript.ParseError) {
        source = line
        location = "\(file):\(lineNumber)"
        var tokens = try Self.tokenize(line, location: location)
        verb = tokens.removeFirst()
        var arguments: [Argument] = []
        for token in tokens {
            if let equals = token.firstIndex(of: "="), !token.hasPrefix("\"") {
                let key = String(token[..<equals])
                arguments.append(Argument(key: key, values: Self.values(String(token[token.index(after: equals)...]))))
            } else {
                arguments.append(Argument(key: "", values: [Self.unquote(token)]))
            }
        }
        self.arguments = arguments
    }

    /// Splits on spaces that are outside quotes and parentheses.
    private static func tokenize(_ line: String, location: String) throws(InteractionScript.ParseError) -> [String] {
        var tokens: [String] = []
        var current = ""
        var depth = 0
        var quoted = false
        for character in line {
            if character == "\"" { quoted.toggle() }
            if !quoted && character == "(" { depth += 1 }
            if !quoted && character == ")" { depth -= 1 }
            if character == " " && !quoted && depth == 0 {
                if !current.isEmpty { tokens.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { tokens.append(current) }
        guard !quoted, depth == 0, !tokens.isEmpty else {
            throw InteractionScript.ParseError(description: "\(location): unbalanced quotes or parentheses")
        }
        return tokens
    }

    /// `(1,2,3)` is a list; anything else is one value.
    private static func values(_ text: String) -> [String] {
        guard text.hasPrefix("("), text.hasSuffix(")") else { return [unquote(text)] }
        let inner = text.dropFirst().dropLast()
        return inner.split(separator: ",").map { unquote(String($0).interactionTrimmed()) }.filter { !$0.isEmpty }
    }

    private static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") else { return text }
        return String(text.dropFirst().dropLast())
    }

    /// The positional arguments, in order.
    var positional: [String] { arguments.filter { $0.key.isEmpty }.flatMap(\.values) }

    /// The values of `key`, or nil when it is absent.
    func values(_ key: String) -> [String]? {
        arguments.first { $0.key == key }?.values
    }

    func value(_ key: String) -> String? { values(key)?.first }
}

extension String {
    func interactionTrimmed() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
