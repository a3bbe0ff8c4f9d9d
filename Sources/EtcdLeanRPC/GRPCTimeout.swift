/// The `grpc-timeout` request header: 1 to 8 ASCII digits and a unit (H, M, S, m, u, n).
public enum GRPCTimeout {
    /// Why a `grpc-timeout` value was refused; `message` is grpc-go's text, which its server
    /// answers with INTERNAL before the call starts.
    public struct Malformed: Error, Equatable, Sendable {
        public var value: String
        public var reason: String

        public var message: String { "transport: malformed time-out: \(reason)" }
    }

    /// The timeout `value` gives; hours too large for a `Duration` are clamped, as grpc-go
    /// clamps them.
    public static func parse(_ value: String) throws(Malformed) -> Duration {
        let bytes = Array(value.utf8)
        guard bytes.count >= 2 else {
            throw Malformed(value: value, reason: "transport: timeout string is too short: \(quoted(value))")
        }
        // Eight digits and the unit, as the protocol allows.
        guard bytes.count <= 9 else {
            throw Malformed(value: value, reason: "transport: timeout string is too long: \(quoted(value))")
        }
        let unit: Duration
        switch bytes.last {
        case UInt8(ascii: "H"): unit = .seconds(3_600)
        case UInt8(ascii: "M"): unit = .seconds(60)
        case UInt8(ascii: "S"): unit = .seconds(1)
        case UInt8(ascii: "m"): unit = .milliseconds(1)
        case UInt8(ascii: "u"): unit = .microseconds(1)
        case UInt8(ascii: "n"): unit = .nanoseconds(1)
        default:
            throw Malformed(value: value, reason: "transport: timeout unit is not recognized: \(quoted(value))")
        }
        var amount: Int64 = 0
        for byte in bytes.dropLast() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                throw Malformed(
                    value: value,
                    reason: "strconv.ParseInt: parsing \(quoted(String(decoding: bytes.dropLast(), as: UTF8.self))): invalid syntax")
            }
            amount = amount * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        // At most 99,999,999 of any unit: even in hours that fits a Duration.
        return unit * amount
    }

    private static func quoted(_ text: String) -> String { "\"\(text)\"" }
}
