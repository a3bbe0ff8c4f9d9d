import Foundation

/// Normalizing, printing and diffing the JSON that `etcdctl -w json` prints.
public enum EtcdJSON {
    /// What replaces the fields that legitimately differ between two servers.
    public static let placeholder = JSONValue.string("<normalized>")

    /// The response header fields that identify a server rather than describe the answer: every
    /// fresh cluster has its own `cluster_id` and `member_id`, and `raft_term` depends on how the
    /// election went. `revision` is kept; it must match.
    public static let serverIdentityFields: Set<String> = ["cluster_id", "member_id", "raft_term"]

    /// The fields whose values are base64 bytes in etcdctl's JSON (keys and values are `[]byte`).
    static let bytesFields: Set<String> = ["key", "value", "range_end"]

    /// Replaces the server-identity fields of every `header` (or `Header`) object, at any depth, by
    /// ``placeholder``. A field that is absent stays absent, so a server that omits one differs.
    public static func normalize(_ value: JSONValue) -> JSONValue {
        switch value {
        case .array(let elements):
            return .array(elements.map(normalize))
        case .object(let members):
            var result: [String: JSONValue] = [:]
            for (key, member) in members {
                // `etcdctl watch -w json` prints clientv3's WatchResponse struct, whose header
                // field has no JSON tag and so keeps its Go name, `Header`.
                if key == "header" || key == "Header", case .object(var header) = member {
                    for field in serverIdentityFields where header[field] != nil { header[field] = placeholder }
                    result[key] = normalize(.object(header))
                } else {
                    result[key] = normalize(member)
                }
            }
            return .object(result)
        default:
            return value
        }
    }

    /// Pretty-prints `value` with sorted keys, showing the decoded text next to every base64
    /// key and value, e.g. `"key": "YQ==" (a)`. The output is for people, not for parsing.
    public static func render(_ value: JSONValue) -> String {
        var output = ""
        render(value, field: nil, indent: "", into: &output)
        return output
    }

    private static func render(_ value: JSONValue, field: String?, indent: String, into output: inout String) {
        switch value {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .number(let text): output += text
        case .string(let text):
            output += quoted(text)
            if let field, bytesFields.contains(field), let decoded = decodedBytes(text) { output += " (\(decoded))" }
        case .array(let elements):
            if elements.isEmpty {
                output += "[]"
                return
            }
            output += "[\n"
            for (offset, element) in elements.enumerated() {
                output += indent + "  "
                render(element, field: field, indent: indent + "  ", into: &output)
                output += offset == elements.count - 1 ? "\n" : ",\n"
            }
            output += indent + "]"
        case .object(let members):
            if members.isEmpty {
                output += "{}"
                return
            }
            output += "{\n"
            let keys = members.keys.sorted()
            for (offset, key) in keys.enumerated() {
                output += indent + "  " + quoted(key) + ": "
                render(members[key] ?? .null, field: key, indent: indent + "  ", into: &output)
                output += offset == keys.count - 1 ? "\n" : ",\n"
            }
            output += indent + "}"
        }
    }

    /// The paths where `reference` and `candidate` differ, each with both values, in a stable order.
    public static func differences(
        reference: JSONValue,
        candidate: JSONValue,
        referenceName: String = "real etcd",
        candidateName: String = "swift-etcd"
    ) -> [String] {
        var found: [String] = []
        diff(reference, candidate, path: "$", field: nil, names: (referenceName, candidateName), into: &found)
        return found
    }

    private static func diff(
        _ reference: JSONValue,
        _ candidate: JSONValue,
        path: String,
        field: String?,
        names: (String, String),
        into found: inout [String]
    ) {
        switch (reference, candidate) {
        case (.object(let left), .object(let right)):
            for key in Set(left.keys).union(right.keys).sorted() {
                let childPath = "\(path).\(key)"
                switch (left[key], right[key]) {
                case (let l?, let r?):
                    diff(l, r, path: childPath, field: key, names: names, into: &found)
                case (let l?, nil):
                    found.append("\(childPath): only \(names.0) has it: \(summary(l, field: key))")
                case (nil, let r?):
                    found.append("\(childPath): only \(names.1) has it: \(summary(r, field: key))")
                case (nil, nil):
                    break
                }
            }
        case (.array(let left), .array(let right)):
            for index in 0..<max(left.count, right.count) {
                let childPath = "\(path)[\(index)]"
                if index < left.count, index < right.count {
                    diff(left[index], right[index], path: childPath, field: field, names: names, into: &found)
                } else if index < left.count {
                    found.append("\(childPath): only \(names.0) has it: \(summary(left[index], field: field))")
                } else {
                    found.append("\(childPath): only \(names.1) has it: \(summary(right[index], field: field))")
                }
            }
        default:
            if reference != candidate {
                found.append(
                    "\(path): \(names.0) \(summary(reference, field: field)), "
                        + "\(names.1) \(summary(candidate, field: field))"
                )
            }
        }
    }

    /// A one-line rendering of a value, for difference lists.
    static func summary(_ value: JSONValue, field: String?) -> String {
        switch value {
        case .array(let elements):
            return "[" + elements.map { summary($0, field: field) }.joined(separator: ", ") + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            let rendered = members.keys.sorted().map { key in
                quoted(key) + ": " + summary(members[key] ?? .null, field: key)
            }
            return "{ " + rendered.joined(separator: ", ") + " }"
        default:
            var output = ""
            render(value, field: field, indent: "", into: &output)
            return output
        }
    }

    /// The text of a base64 field, escaped when it is not printable UTF-8; `nil` if not base64.
    static func decodedBytes(_ base64: String) -> String? {
        guard let data = Data(base64Encoded: base64) else { return nil }
        if let text = String(data: data, encoding: .utf8),
            text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        {
            return text.count > 80 ? "\(text.prefix(60))… (\(data.count) bytes)" : text
        }
        let hex = data.prefix(32).map { String($0, radix: 16).count == 1 ? "0\(String($0, radix: 16))" : String($0, radix: 16) }
        return "0x" + hex.joined() + (data.count > 32 ? "… (\(data.count) bytes)" : "")
    }

    static func quoted(_ text: String) -> String {
        var output = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\t": output += "\\t"
            case "\r": output += "\\r"
            default:
                if scalar.value < 0x20 {
                    output += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                        + String(scalar.value, radix: 16)
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        return output + "\""
    }
}
