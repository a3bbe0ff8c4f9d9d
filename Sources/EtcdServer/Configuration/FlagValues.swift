import Foundation

/// A flag etcd's parser refuses: Go's `flag` package messages, with which etcd exits 2.
public enum FlagError: Error, Hashable, Sendable, CustomStringConvertible {
    case notDefined(String)
    case missingArgument(String)
    case invalidBoolean(flag: String, value: String)
    case invalidValue(flag: String, value: String, reason: String)
    case invalidEnvironment(variable: String, value: String, reason: String)
    case notAFlag(String)
    case configFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .notDefined(let flag): return "flag provided but not defined: -\(flag)"
        case .missingArgument(let flag): return "flag needs an argument: -\(flag)"
        case .invalidBoolean(let flag, let value): return "invalid boolean value \"\(value)\" for -\(flag): parse error"
        case .invalidValue(let flag, let value, let reason): return "invalid value \"\(value)\" for flag -\(flag): \(reason)"
        case .invalidEnvironment(let variable, let value, let reason): return "invalid value \"\(value)\" for \(variable): \(reason)"
        case .notAFlag(let argument): return "\"\(argument)\" is not a valid flag"
        case .configFile(let path, let reason): return "error reading config file \(path): \(reason)"
        }
    }
}

/// Every flag's value as given (or its default), and which ones were given: what etcd's flag set
/// holds after parsing the command line, the `ETCD_*` variables or the config file.
public struct FlagValues: Sendable, Equatable {
    public private(set) var values: [String: String]
    /// Flags given on the command line, in the environment or in the config file.
    public private(set) var explicitlySet: Set<String> = []
    /// Things worth a warning once logging is set up (shadowed or unknown environment variables,
    /// config-file keys that name no flag).
    public internal(set) var warnings: [String] = []
    /// The config file the values came from, if any.
    public internal(set) var configFile: String?
    public internal(set) var helpRequested = false

    public init() {
        values = Dictionary(uniqueKeysWithValues: FlagTable.all.map { ($0.name, $0.defaultValue) })
    }

    public subscript(flag: String) -> String { values[flag] ?? "" }

    public func isSet(_ flag: String) -> Bool { explicitlySet.contains(flag) }

    /// Sets a flag after checking the value as etcd's flag of that type would.
    mutating func set(_ flag: String, _ value: String) throws(FlagError) {
        guard let spec = FlagTable.byName[flag] else { throw .notDefined(flag) }
        values[flag] = try Self.checked(value, spec: spec)
        explicitlySet.insert(flag)
    }

    /// The value as etcd's flag type accepts it; URL and string lists are kept as given.
    static func checked(_ value: String, spec: FlagSpec) throws(FlagError) -> String {
        let flag = spec.name
        switch spec.kind {
        case .string, .strings:
            return value
        case .bool:
            guard let parsed = parseBool(value) else { throw .invalidBoolean(flag: flag, value: value) }
            return parsed ? "true" : "false"
        case .unsigned:
            guard parseUnsigned(value) != nil else { throw .invalidValue(flag: flag, value: value, reason: "parse error") }
            return value
        case .unsigned32:
            guard let parsed = parseUnsigned(value) else {
                throw .invalidValue(flag: flag, value: value, reason: "strconv.ParseUint: parsing \"\(value)\": invalid syntax")
            }
            guard parsed <= UInt64(UInt32.max) else {
                throw .invalidValue(flag: flag, value: value, reason: "strconv.ParseUint: parsing \"\(value)\": value out of range")
            }
            return value
        case .integer:
            guard parseInteger(value) != nil else { throw .invalidValue(flag: flag, value: value, reason: "parse error") }
            return value
        case .duration:
            guard GoDuration.parse(value) != nil else { throw .invalidValue(flag: flag, value: value, reason: "parse error") }
            return value
        case .urls:
            // etcd's URL flags may be empty only where the default is (`--listen-metrics-urls`).
            if value.isEmpty && spec.defaultValue.isEmpty { return value }
            do {
                _ = try EndpointURL.parseList(value)
            } catch {
                throw .invalidValue(flag: flag, value: value, reason: error.reason)
            }
            return value
        case .choice(let valid):
            guard valid.contains(value) else {
                let list = valid.map { "\"\($0)\"" }.joined(separator: ", ")
                throw .invalidValue(flag: flag, value: value, reason: "invalid value (valid values are \(list))")
            }
            return value
        }
    }

    /// Go's `strconv.ParseBool`, which etcd's boolean flags use.
    public static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: return nil
        }
    }

    /// Go's `strconv.ParseUint` with base 0, as its `uint` flags read: decimal, or `0x`/`0o`/`0b`.
    static func parseUnsigned(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where lower.hasPrefix(prefix) && lower.count > 2 {
            return UInt64(lower.dropFirst(2), radix: radix)
        }
        guard !text.hasPrefix("+") else { return nil }
        return UInt64(text)
    }

    /// Go's `strconv.ParseInt` with base 0, as its `int` flags read.
    static func parseInteger(_ text: String) -> Int64? {
        if text.hasPrefix("-") {
            guard let magnitude = parseUnsigned(String(text.dropFirst())), magnitude <= UInt64(Int64.max) else { return nil }
            return -Int64(magnitude)
        }
        let body = text.hasPrefix("+") ? String(text.dropFirst()) : text
        guard let magnitude = parseUnsigned(body), magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    /// Whether two values of a flag mean the same (`1` and `true`, `10m` and `10m0s`).
    static func sameValue(_ left: String, _ right: String, kind: FlagKind) -> Bool {
        switch kind {
        case .bool: return parseBool(left) == parseBool(right)
        case .duration: return GoDuration.parse(left) == GoDuration.parse(right)
        case .unsigned, .unsigned32, .integer: return parseInteger(left) == parseInteger(right)
        default: return left == right
        }
    }
}

extension ConfigurationError {
    /// The reason alone, for messages that name the flag and value themselves.
    var reason: String {
        switch self {
        case .invalidURL(let url, let reason): return "\(reason): \(url)"
        case .unsupported(let what), .invalid(let what): return what
        case .invalidValue(_, _, let reason): return reason
        }
    }
}
