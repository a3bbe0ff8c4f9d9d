import EtcdTestSupport
import Testing

/// Request size limits and empty keys, compared with real etcd.
@Suite("Request limit compatibility with real etcd")
struct LimitsCompatibilityTests {
    @Test("a request just over --max-request-bytes is rejected with 'request is too large'")
    func requestTooLarge() async throws {
        try await expectCompatible(
            "--max-request-bytes=1024",
            options: EtcdOptions(extraArguments: ["--max-request-bytes=1024"]),
            referenceMentions: ["etcdserver: request is too large"]
        ) { side in
            try await side.etcdctl("put", "small", String(repeating: "s", count: 500), "-w", "json")
            try await side.etcdctl("put", "big", String(repeating: "b", count: 2000))
            // etcd measures the whole raft request, whose header holds a request ID of varying
            // varint length, so the exact boundary moves by a few bytes between runs: 960 bytes
            // always fit in 1024 and 1010 never do.
            try await side.etcdctl("put", "fits", String(repeating: "f", count: 960), "-w", "json")
            try await side.etcdctl("put", "edge", String(repeating: "e", count: 1010))
            try await side.recordRevision()
            try await side.etcdctl(
                ["txn", "-w", "json"],
                standardInput: "\nput big \(String(repeating: "b", count: 2000))\n\n\n"
            )
            try await side.etcdctl(
                ["txn", "-w", "json"],
                standardInput: "\n" + (0..<40).map { "put key\($0) value-of-thirty-bytes-or-so" }.joined(separator: "\n")
                    + "\n\n\n"
            )
            try await side.etcdctl("get", "", "--prefix", "--keys-only", "-w", "json")
        }
    }

    @Test("empty keys are rejected by put, get and del with 'key is not provided'")
    func emptyKeys() async throws {
        try await expectCompatible(
            "empty keys",
            referenceMentions: ["etcdserver: key is not provided"]
        ) { side in
            try await side.etcdctl("put", "", "v")
            try await side.etcdctl("get", "")
            try await side.etcdctl("get", "", "-w", "json")
            try await side.etcdctl("del", "")
            try await side.etcdctl("del", "", "--prev-kv")
            try await side.recordRevision()
            // With --prefix or --from-key the empty key means the whole keyspace and is allowed.
            try await side.etcdctl("put", "k", "v")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await side.etcdctl("get", "", "--from-key", "-w", "json")
            try await side.etcdctl("del", "", "--from-key", "-w", "json")
        }
    }
}
