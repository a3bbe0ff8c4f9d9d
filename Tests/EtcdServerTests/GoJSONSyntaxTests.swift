import Testing

@testable import EtcdServer

/// Malformed gateway bodies get Go's `encoding/json` messages, as etcd's gateway answers them
/// (the expectations were read off etcd 3.4's answers).
@Suite("Go-worded JSON syntax errors")
struct GoJSONSyntaxTests {
    @Test("Syntax errors", arguments: [
        ("{bad json", "invalid character 'b' looking for beginning of object key string"),
        (#"{"key":"#, "unexpected EOF"),
        (#"{"key":"Zm9v""#, "unexpected EOF"),
        (#"{"key" "x"}"#, #"invalid character '"' after object key"#),
        (#"{"key":tru}"#, "invalid character '}' in literal true (expecting 'e')"),
        (#"{"key":"\x"}"#, "invalid character 'x' in string escape code"),
        (#"{"key":-}"#, "invalid character '}' in numeric literal"),
        (#"{"key":1.}"#, "invalid character '}' after decimal point in numeric literal"),
        (#"{"key":"Zm9v",}"#, "invalid character '}' looking for beginning of object key string"),
        ("x", "invalid character 'x' looking for beginning of value"),
        ("[1 2]", "invalid character '2' after array element"),
        (#"{"a":1 "b":2}"#, #"invalid character '"' after object key:value pair"#),
    ])
    func syntaxErrors(body: String, message: String) {
        #expect(GoJSONSyntax.firstValue(Array(body.utf8)) == .syntaxError(message))
    }

    @Test("Only the first value counts, and white space alone is no value")
    func firstValue() {
        let body = Array(#"  {"key":"Zm9v"}} trailing"#.utf8)
        #expect(GoJSONSyntax.firstValue(body) == .value(2..<16))
        #expect(GoJSONSyntax.firstValue(Array(" \n\t".utf8)) == .empty)
        #expect(GoJSONSyntax.firstValue(Array("12".utf8)) == .value(0..<2))
    }
}
