import Foundation

/// Plain HTTP/1.1 requests through the installed curl, for etcd's HTTP endpoints on the client
/// port (`/version`, `/health`, and the JSON gateway under `/v3/`).
public enum Curl {
    /// Sends `method url` with `body` (if any) and returns the status and body.
    ///
    /// A request that gets no HTTP answer (refused, reset, not HTTP/1.1) has status 0 and curl's
    /// message in ``CurlResult/standardError``.
    public static func request(
        _ method: String,
        url: String,
        body: String? = nil,
        timeout: Duration = .seconds(10),
        extraArguments: [String] = []
    ) async throws -> CurlResult {
        try await withTemporaryDirectory(prefix: "curl") { scratch in
            let output = scratch.appending("stdout")
            let error = scratch.appending("stderr")
            let responseBody = scratch.appending("body")
            let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            var arguments = [
                "--silent", "--show-error", "--http1.1", "--max-time", String(seconds),
                "--request", method, "--output", responseBody.path, "--write-out", "%{http_code}\n%{content_type}",
            ]
            if let body {
                let file = scratch.appending("request")
                try Data(body.utf8).write(to: file)
                arguments += ["--header", "Content-Type: application/json", "--data-binary", "@\(file.path)"]
            }
            let child = try ChildProcess(
                executable: URL(fileURLWithPath: ProcessInfo.processInfo.environment["CURL_BINARY"] ?? "/usr/bin/curl"),
                arguments: arguments + extraArguments + [url],
                standardOutput: output,
                standardError: error
            )
            var exit = await child.waitForExit(timeout: timeout + .seconds(5))
            if exit == nil { exit = await child.kill() }
            func read(_ url: URL) -> String {
                String(decoding: (try? Data(contentsOf: url)) ?? Data(), as: UTF8.self)
            }
            let written = read(output).split(separator: "\n", omittingEmptySubsequences: false)
            return CurlResult(
                status: written.first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0,
                body: read(responseBody),
                standardError: read(error),
                contentType: written.count > 1 ? String(written[1]) : ""
            )
        }
    }
}

/// What one HTTP request answered.
public struct CurlResult: Sendable {
    /// The HTTP status, or 0 when there was no HTTP answer.
    public var status: Int
    public var body: String
    /// curl's own error message, if any.
    public var standardError: String
    /// The response's Content-Type, empty when it had none.
    public var contentType: String = ""
}

extension CompatibilitySession {
    /// Sends an HTTP request to this side's client URL and records the status and the body
    /// (JSON is normalized like etcdctl's output).
    @discardableResult
    public func http(
        _ method: String, _ path: String, body: String? = nil, baseURL: String? = nil, curlArguments: [String] = []
    ) async throws -> CurlResult {
        let result = try await Curl.request(
            method, url: (baseURL ?? server.clientURL) + path, body: body, extraArguments: curlArguments)
        var label = "HTTP \(method) \(path)"
        if let body { label += " " + body }
        record(
            TranscriptEntry(
                label: label,
                exit: result.status == 0 ? "no HTTP response" : "HTTP \(result.status)",
                output: Self.observation(of: result.body, endpoint: server.clientEndpoint),
                errorOutput: result.standardError.replacingOccurrences(of: server.clientEndpoint, with: "<endpoint>")
                    .replacingOccurrences(of: String(server.clientPort), with: "<port>")
            )
        )
        return result
    }
}
