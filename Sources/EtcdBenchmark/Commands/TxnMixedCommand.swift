import ArgumentParser
import EtcdAPI
import EtcdRaft
import Foundation
import GRPCCore

/// `txn-mixed`: Txns that are either one Range over the whole key space (limit `--limit`) or one
/// Put of key number `i % keySpaceSize`; a request is a read with probability
/// `rwRatio / (1 + rwRatio)`, as in etcd's benchmark. Reads and writes are reported apart.
struct TxnMixedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-mixed",
        abstract: "Benchmark a mixed load of txn-put & txn-range."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Key size of mixed txn.")
    var keySize: Int = 8

    @Option(help: "Value size of mixed txn.")
    var valSize: Int = 8

    @Option(help: "Maximum possible keys.")
    var keySpaceSize: Int = 1

    @Option(help: "Read operation range end key; by default the whole key space.")
    var endKey: String = ""

    @Option(help: "Read operation range result limit.")
    var limit: Int64 = 1000

    @Option(help: "Linearizable (l) or Serializable (s).")
    var consistency: String = "l"

    @Option(help: "Read/write ops ratio.")
    var rwRatio: Double = 1

    @Option(help: "Maximum txns per second (0 is no limit).")
    var rate: Int = 0

    func validate() throws {
        if let problem = KeyEncoding.validate(keySize: keySize, keySpaceSize: keySpaceSize) {
            throw ValidationError(problem)
        }
        guard consistency == "l" || consistency == "s" else {
            throw ValidationError("--consistency must be l or s")
        }
        guard rwRatio >= 0 else { throw ValidationError("--rw-ratio must not be negative") }
    }

    func run() async throws {
        let value = Data(randomBytes(valSize, seed: 0x5EED))
        var rangeRequest = Etcdserverpb_RangeRequest()
        // etcd's OpGet("", WithRange(end), WithPrefix()): the prefix of "" is everything.
        rangeRequest.key = Data([0])
        rangeRequest.rangeEnd = endKey.isEmpty ? Data([0]) : Data(endKey.utf8)
        rangeRequest.limit = limit
        rangeRequest.serializable = consistency == "s"
        let range = rangeRequest
        if global.writeOut == .simple {
            print(consistency == "l" ? "bench with linearizable range" : "bench with serializable range")
        }
        let readProbability = rwRatio / (1 + rwRatio)
        let reports = try await Connections.with(global) { connections in
            await runLoad(
                operation: "txn-mixed",
                classes: ["read", "write"],
                options: global,
                connections: connections,
                ratePerSecond: rate
            ) { [keySize, keySpaceSize] clientIndex in
                TxnMixedWorker(
                    kv: Etcdserverpb_KV.Client(wrapping: connections.client(for: clientIndex)),
                    metadata: connections.metadata,
                    range: range,
                    keySize: keySize,
                    value: value,
                    keySpaceSize: keySpaceSize,
                    readProbability: readProbability,
                    seed: UInt64(clientIndex) &+ 0x7A11
                )
            }
        }
        let headings = reports.map { report in
            report.operation.hasSuffix("read")
                ? "Total Read Ops: \(report.successes + report.errors)\nDetails:"
                : "Total Write Ops: \(report.successes + report.errors)\nDetails:"
        }
        emit(zip(headings, reports).map { (heading: $0, report: $1) }, options: global)
    }
}

/// One client's mixed Txns: a fixed read Txn, and a write Txn whose key is rewritten.
struct TxnMixedWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    private let read: ClientRequest<Etcdserverpb_TxnRequest>
    private var write: ClientRequest<Etcdserverpb_TxnRequest>
    private var key: [UInt8]
    private let keySpaceSize: Int
    private let readProbability: Double
    private var random: SplitMix64
    private var isRead = false

    init(
        kv: Etcdserverpb_KV.Client<Connections.Transport>,
        metadata: Metadata,
        range: Etcdserverpb_RangeRequest,
        keySize: Int,
        value: Data,
        keySpaceSize: Int,
        readProbability: Double,
        seed: UInt64
    ) {
        self.kv = kv
        var readOperation = Etcdserverpb_RequestOp()
        readOperation.requestRange = range
        var readTxn = Etcdserverpb_TxnRequest()
        readTxn.success = [readOperation]
        read = ClientRequest(message: readTxn, metadata: metadata)
        key = [UInt8](repeating: 0, count: keySize)
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key)
        put.value = value
        var writeOperation = Etcdserverpb_RequestOp()
        writeOperation.requestPut = put
        var writeTxn = Etcdserverpb_TxnRequest()
        writeTxn.success = [writeOperation]
        write = ClientRequest(message: writeTxn, metadata: metadata)
        self.keySpaceSize = keySpaceSize
        self.readProbability = readProbability
        random = SplitMix64(seed: seed)
    }

    mutating func prepare(_ index: Int) -> Int {
        isRead = Double(random.next() >> 11) / Double(1 << 53) < readProbability
        if isRead { return 0 }
        if keySpaceSize > 1 {
            KeyEncoding.put(index % keySpaceSize, into: &key)
            write.message.success[0].requestPut.key = Data(key)
        }
        return 1
    }

    func send() async throws {
        _ = try await kv.txn(request: isRead ? read : write)
    }
}
