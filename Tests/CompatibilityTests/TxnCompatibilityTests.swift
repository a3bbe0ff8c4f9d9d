import EtcdTestSupport
import Testing

/// `etcdctl txn` (compares, success ops and failure ops read from standard input, separated by
/// blank lines), compared with real etcd.
@Suite("Txn compatibility with real etcd")
struct TxnCompatibilityTests {
    /// The text etcdctl's non-interactive txn reads: compares, a blank line, success operations,
    /// a blank line, failure operations.
    static func script(compares: [String], success: [String], failure: [String]) -> String {
        (compares + [""] + success + [""] + failure + [""]).joined(separator: "\n") + "\n"
    }

    static func txn(
        _ side: CompatibilitySession,
        compares: [String],
        success: [String] = [],
        failure: [String] = [],
        json: Bool = true
    ) async throws {
        try await side.etcdctl(
            json ? ["txn", "-w", "json"] : ["txn"],
            standardInput: script(compares: compares, success: success, failure: failure)
        )
    }

    @Test("compares on mod, value, version and create revision pick the success or the failure branch")
    func comparesChooseBranches() async throws {
        try await expectCompatible("txn compares") { side in
            try await side.etcdctl("put", "k", "v")
            try await side.etcdctl("put", "k", "v2")
            try await side.etcdctl("put", "other", "x")
            let cases: [[String]] = [
                [#"mod("k") > "0""#],
                [#"mod("k") = "3""#],
                [#"mod("k") < "3""#],
                [#"mod("k") != "3""#],
                [#"val("k") = "v2""#],
                [#"val("k") = "v""#],
                [#"val("k") > "v1""#],
                [#"val("k") < "v""#],
                [#"ver("k") < "3""#],
                [#"ver("k") = "2""#],
                [#"ver("k") > "2""#],
                [#"create("k") = "2""#],
                [#"create("k") = "0""#],
                [#"create("missing") = "0""#],
                [#"ver("missing") = "0""#],
                [#"mod("missing") = "0""#],
                [#"val("missing") = """#],
                [#"c("k") = "2""#, #"m("k") = "3""#, #"value("other") = "x""#],
                [#"mod("k") > "0""#, #"val("other") = "nope""#],
                [],
            ]
            for compares in cases {
                try await Self.txn(side, compares: compares, success: ["get k"], failure: ["get other"])
            }
        }
    }

    @Test("success and failure branches run their puts, gets and deletes in order")
    func branchesWithOperations() async throws {
        try await expectCompatible("txn operations") { side in
            try await side.etcdctl("put", "a", "1")
            try await side.etcdctl("put", "ab", "2")
            try await side.etcdctl("put", "b", "3")
            try await Self.txn(
                side,
                compares: [#"val("a") = "1""#],
                success: ["put a 10", "get a", "put c 4", "del b", "get a --prefix", "get b"],
                failure: ["put never written"]
            )
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await Self.txn(
                side,
                compares: [#"val("a") = "1""#],
                success: ["put never written"],
                failure: ["put z 26", "del a --prefix", "get \"\" --from-key", "put a back"]
            )
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            // The simple format prints SUCCESS or FAILURE and then each response.
            try await Self.txn(
                side,
                compares: [#"mod("z") > "0""#],
                success: ["put y 25", "get z", "del y"],
                failure: [],
                json: false
            )
            try await Self.txn(side, compares: [#"mod("z") = "0""#], success: ["put y 25"], failure: ["get z"], json: false)
            // Branches with options on their operations.
            try await Self.txn(
                side,
                compares: [],
                success: ["put c 5 --prev-kv", "del z --prev-kv", "get \"\" --prefix --keys-only --limit=2"]
            )
            // A txn with nothing in either branch still answers, and does not move the revision.
            try await Self.txn(side, compares: [#"mod("a") > "0""#], success: [], failure: [])
            try await Self.txn(side, compares: [#"mod("a") > "0""#], success: ["get a"], failure: [])
            try await side.recordRevision()
        }
    }

    @Test("a txn that only reads or deletes nothing does not move the revision")
    func readOnlyTxn() async throws {
        try await expectCompatible("txn read-only") { side in
            try await side.etcdctl("put", "a", "1")
            try await Self.txn(side, compares: [], success: ["get a", "get missing"])
            try await Self.txn(side, compares: [], success: ["del missing"])
            try await side.recordRevision()
            try await Self.txn(side, compares: [], success: ["del a", "put a 2"])
            try await side.etcdctl("get", "a", "-w", "json")
        }
    }

    @Test("129 operations exceed the default limit of 128 with 'too many operations in txn request'")
    func tooManyOperations() async throws {
        try await expectCompatible(
            "txn too many ops",
            referenceMentions: ["etcdserver: too many operations in txn request"]
        ) { side in
            let puts = (0..<129).map { "put key\($0) v" }
            try await Self.txn(side, compares: [], success: puts)
            try await Self.txn(side, compares: [], success: [], failure: puts)
            try await side.recordRevision()
            try await Self.txn(side, compares: [], success: Array(puts.prefix(128)))
            try await side.etcdctl("get", "key", "--prefix", "--limit=1", "-w", "json")
        }
    }

    @Test("--max-txn-ops lowers the limit on both servers")
    func maxTxnOpsFlag() async throws {
        try await expectCompatible(
            "txn --max-txn-ops=4",
            options: EtcdOptions(extraArguments: ["--max-txn-ops=4"]),
            referenceMentions: ["etcdserver: too many operations in txn request"]
        ) { side in
            let puts = (0..<5).map { "put key\($0) v" }
            try await Self.txn(side, compares: [], success: puts)
            try await Self.txn(side, compares: [], success: Array(puts.prefix(4)))
            try await Self.txn(side, compares: [], success: Array(puts.prefix(4)), failure: puts)
            try await Self.txn(side, compares: [], success: ["get a", "get b", "get c", "get d", "get e"])
            try await side.etcdctl("get", "key", "--prefix", "--limit=1", "-w", "json")
        }
    }

    @Test("the same key written twice in one branch is rejected with 'duplicate key given in txn request'")
    func duplicateKeys() async throws {
        try await expectCompatible(
            "txn duplicate keys",
            referenceMentions: ["etcdserver: duplicate key given in txn request"]
        ) { side in
            try await side.etcdctl("put", "a", "1")
            try await Self.txn(side, compares: [], success: ["put q 1", "put q 2"])
            try await Self.txn(side, compares: [], success: ["put q 1", "del q"])
            try await Self.txn(side, compares: [], success: ["del q", "put q 1"])
            try await Self.txn(side, compares: [], success: ["put a 1", "del a --prefix"])
            try await Self.txn(side, compares: [], success: ["del a", "del a"])
            try await Self.txn(side, compares: [], success: [], failure: ["put q 1", "put q 2"])
            try await side.recordRevision()
            // Reading a key twice, or writing it in both branches, is allowed.
            try await Self.txn(side, compares: [], success: ["get a", "get a", "put a 2"])
            try await Self.txn(side, compares: [], success: ["put q 1"], failure: ["put q 2"])
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
        }
    }

    @Test("txn with an empty key or an unknown lease fails like a plain request")
    func txnErrors() async throws {
        try await expectCompatible(
            "txn errors",
            referenceMentions: ["etcdserver: key is not provided", "etcdserver: requested lease not found"]
        ) { side in
            try await Self.txn(side, compares: [], success: [#"put "" v"#])
            try await Self.txn(side, compares: [], success: [#"get """#])
            try await Self.txn(side, compares: [], success: ["put k v --lease=1234abcd"])
            try await Self.txn(side, compares: [#"mod("") > "0""#], success: ["get a"])
            try await side.recordRevision()
        }
    }
}
