/// Go's `time.ParseDuration`, which etcd's duration flags use.
public enum GoDuration {
    /// An optional sign, then one or more decimal numbers each followed by a unit (`ns`, `us`,
    /// `µs`, `ms`, `s`, `m`, `h`), as in `1h2m0.5s`; or a bare `0`. Nil for anything else.
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text)
        var negative = false
        if let sign = rest.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            rest = rest.dropFirst()
        }
        if rest == "0" { return .zero }
        guard !rest.isEmpty else { return nil }
        var nanoseconds = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { isNumeral($0) }
            guard number.contains(where: \.isNumber), let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !isNumeral($0) }
            guard let scale = nanosecondsPerUnit[String(unit)] else { return nil }
            rest = rest.dropFirst(unit.count)
            nanoseconds += value * scale
        }
        // Go refuses what does not fit in an int64 of nanoseconds.
        guard nanoseconds < 9.2e18 else { return nil }
        return .nanoseconds(Int64(negative ? -nanoseconds : nanoseconds))
    }

    private static func isNumeral(_ character: Character) -> Bool {
        character.isASCII && (character.isNumber || character == ".")
    }

    private static let nanosecondsPerUnit: [String: Double] = [
        "ns": 1, "us": 1e3, "\u{00B5}s": 1e3, "\u{03BC}s": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3_600e9,
    ]
}
