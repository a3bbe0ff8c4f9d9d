/// Finds the first JSON value of a request body and reports a syntax error as Go's
/// `encoding/json` words it, since etcd's gateway answers a malformed body with that message
/// (e.g. "invalid character 'b' looking for beginning of object key string").
///
/// Like Go's `json.Decoder`, which the gateway reads bodies with, only the first value counts:
/// whatever follows it is ignored, and a body of nothing but white space is no value at all.
enum GoJSONSyntax {
    enum Outcome: Equatable {
        /// No value: an empty request.
        case empty
        /// The bytes of the first value.
        case value(Range<Int>)
        case syntaxError(String)
    }

    /// Deepest nesting followed; deeper bodies are refused rather than recursed into.
    static let maxDepth = 10_000

    static func firstValue(_ bytes: [UInt8]) -> Outcome {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.position < bytes.count else { return .empty }
        let start = scanner.position
        do throws(SyntaxError) {
            try scanner.value(depth: 0)
            return .value(start..<scanner.position)
        } catch {
            return .syntaxError(error.message)
        }
    }

    struct SyntaxError: Error {
        var message: String
    }

    /// Go's `quoteChar`: the byte in single quotes, escaped as Go quotes strings.
    static func quoted(_ byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "'"): return #"'\''"#
        case UInt8(ascii: "\""): return #"'"'"#
        case 0x07: return #"'\a'"#
        case 0x08: return #"'\b'"#
        case 0x0C: return #"'\f'"#
        case 0x0A: return #"'\n'"#
        case 0x0D: return #"'\r'"#
        case 0x09: return #"'\t'"#
        case 0x0B: return #"'\v'"#
        case UInt8(ascii: "\\"): return #"'\\'"#
        case 0x20..<0x7F: return "'\(Character(Unicode.Scalar(byte)))'"
        case 0x7F: return #"'\x7f'"#
        case 0x80...: return "'\(Character(Unicode.Scalar(byte)))'"
        default:
            let hex = String(byte, radix: 16)
            return #"'\x"# + (hex.count == 1 ? "0" + hex : hex) + "'"
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipWhitespace() {
            while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
        }

        func invalid(_ byte: UInt8, _ context: String) -> SyntaxError {
            SyntaxError(message: "invalid character \(GoJSONSyntax.quoted(byte)) \(context)")
        }

        /// The next byte, or "unexpected EOF" when the body ends inside a value.
        mutating func next() throws(SyntaxError) -> UInt8 {
            guard position < bytes.count else { throw SyntaxError(message: "unexpected EOF") }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func value(depth: Int) throws(SyntaxError) {
            guard depth < GoJSONSyntax.maxDepth else { throw SyntaxError(message: "exceeded max depth") }
            skipWhitespace()
            let byte = try next()
            switch byte {
            case UInt8(ascii: "{"): try object(depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number(first: byte)
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: throw invalid(byte, "looking for beginning of value")
            }
        }

        mutating func object(depth: Int) throws(SyntaxError) {
            skipWhitespace()
            var byte = try next()
            if byte == UInt8(ascii: "}") { return }
            while true {
                guard byte == UInt8(ascii: "\"") else { throw invalid(byte, "looking for beginning of object key string") }
                try string()
                skipWhitespace()
                byte = try next()
                guard byte == UInt8(ascii: ":") else { throw invalid(byte, "after object key") }
                try value(depth: depth + 1)
                skipWhitespace()
                byte = try next()
                if byte == UInt8(ascii: "}") { return }
                guard byte == UInt8(ascii: ",") else { throw invalid(byte, "after object key:value pair") }
                skipWhitespace()
                byte = try next()
            }
        }

        mutating func array(depth: Int) throws(SyntaxError) {
            skipWhitespace()
            guard position < bytes.count else { throw SyntaxError(message: "unexpected EOF") }
            if bytes[position] == UInt8(ascii: "]") {
                position += 1
                return
            }
            while true {
                try value(depth: depth + 1)
                skipWhitespace()
                let byte = try next()
                if byte == UInt8(ascii: "]") { return }
                guard byte == UInt8(ascii: ",") else { throw invalid(byte, "after array element") }
            }
        }

        mutating func string() throws(SyntaxError) {
            while true {
                let byte = try next()
                switch byte {
                case UInt8(ascii: "\""): return
                case UInt8(ascii: "\\"):
                    let escaped = try next()
                    if escaped == UInt8(ascii: "u") {
                        for _ in 0..<4 {
                            let digit = try next()
                            guard isHexDigit(digit) else { throw invalid(digit, "in \\u hexadecimal character escape") }
                        }
                    } else if !Array(#""\/bfnrt"#.utf8).contains(escaped) {
                        throw invalid(escaped, "in string escape code")
                    }
                case 0..<0x20: throw invalid(byte, "in string literal")
                default: continue
                }
            }
        }

        func isHexDigit(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
        }

        func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

        /// A number ends at the first byte that cannot continue it (judged by what encloses it);
        /// at the end of the body a complete number is a complete value.
        mutating func number(first: UInt8) throws(SyntaxError) {
            var leading = first
            if first == UInt8(ascii: "-") {
                leading = try next()
                guard isDigit(leading) else { throw invalid(leading, "in numeric literal") }
            }
            if leading != UInt8(ascii: "0") {
                while position < bytes.count, isDigit(bytes[position]) { position += 1 }
            }
            if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
                position += 1
                let digit = try next()
                guard isDigit(digit) else { throw invalid(digit, "after decimal point in numeric literal") }
                while position < bytes.count, isDigit(bytes[position]) { position += 1 }
            }
            if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
                position += 1
                var digit = try next()
                if digit == UInt8(ascii: "+") || digit == UInt8(ascii: "-") { digit = try next() }
                guard isDigit(digit) else { throw invalid(digit, "in exponent of numeric literal") }
                while position < bytes.count, isDigit(bytes[position]) { position += 1 }
            }
        }

        mutating func literal(_ word: String) throws(SyntaxError) {
            for expected in word.utf8.dropFirst() {
                let byte = try next()
                guard byte == expected else {
                    throw invalid(byte, "in literal \(word) (expecting \(GoJSONSyntax.quoted(expected)))")
                }
            }
        }
    }
}
