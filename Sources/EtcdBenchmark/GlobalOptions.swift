import ArgumentParser
import Foundation

/// The flags every subcommand shares, named as in etcd's `tools/benchmark` root command.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Comma-separated gRPC endpoints (host:port).")
    var endpoints: String = "127.0.0.1:2379"

    @Option(help: "Total number of gRPC connections.")
    var conns: Int = 1

    @Option(help: "Total number of concurrent in-flight requests (one task each).")
    var clients: Int = 1

    @Option(help: "Total number of requests.")
    var total: Int = 10000

    @Option(help: "Stop after this many seconds even if --total is not reached (0: no limit).")
    var duration: Double = 0

    @Option(help: "Username[:password] for authentication (Auth.Authenticate; token sent as metadata).")
    var user: String?

    @Option(help: "Verify the server's certificate with this CA bundle (enables TLS).")
    var cacert: String?

    @Option(help: "Client certificate for TLS client authentication.")
    var cert: String?

    @Option(help: "Client private key for TLS client authentication.")
    var key: String?

    @Flag(help: "Run the client tasks and all connections on one NIO event loop thread (no thread hops).")
    var eventLoopExecutor = false

    /// For showing why the responder exists: without it, real etcd's PINGs make a busy client
    /// send GOAWAY(ENHANCE_YOUR_CALM) and reconnect.
    @Flag(help: .hidden)
    var withoutPingResponder = false

    @Option(name: [.customShort("w"), .customLong("write-out")], help: "Output format: simple or json.")
    var writeOut: OutputFormat = .simple

    enum OutputFormat: String, ExpressibleByArgument, Sendable {
        case simple
        case json
    }

    mutating func validate() throws {
        guard conns >= 1 else { throw ValidationError("--conns must be at least 1") }
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
        guard total >= 0 else { throw ValidationError("--total must not be negative") }
        guard duration >= 0 else { throw ValidationError("--duration must not be negative") }
        guard (cert == nil) == (key == nil) else { throw ValidationError("--cert and --key go together") }
        _ = try parsedEndpoints()
    }

    func parsedEndpoints() throws -> [Endpoint] {
        let parts = endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty else { throw ValidationError("--endpoints is empty") }
        return try parts.map { try Endpoint(parsing: $0) }
    }

    var usesTLS: Bool { cacert != nil || cert != nil }
}

/// One `host:port`, with an optional `http://` or `https://` prefix as etcdctl accepts.
struct Endpoint: Equatable, Sendable {
    var host: String
    var port: Int
    var isHTTPS = false

    init(host: String, port: Int, isHTTPS: Bool = false) {
        self.host = host
        self.port = port
        self.isHTTPS = isHTTPS
    }

    init(parsing text: String) throws {
        var rest = Substring(text)
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst("https://".count)
            isHTTPS = true
        }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ValidationError("endpoint '\(text)' is not host:port") }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        guard !host.isEmpty else { throw ValidationError("endpoint '\(text)' has no host") }
        self.host = host
        self.port = port
    }
}
