import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore

/// `txn-put`: Txns of `--txn-ops` Puts each; request `i` writes key numbers
/// `(i * txnOps + j) % keySpaceSize`, as etcd's benchmark does (so the key space must hold at
/// least `--txn-ops` keys: etcd refuses a txn that writes one key twice).
struct TxnPutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txn-put", abstract: "Benchmark txn-put.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Key size of txn put.")
    var keySize: Int = 8

    @Option(help: "Value size of txn put.")
    var valSize: Int = 8

    @Option(help: "Number of puts per txn.")
    var txnOps: Int = 1

    @Option(help: "Maximum possible keys.")
    var keySpaceSize: Int = 1

    @Option(help: "Maximum txns per second (0 is no limit).")
    var rate: Int = 0

    func validate() throws {
        if let problem = KeyEncoding.validate(keySize: keySize, keySpaceSize: keySpaceSize) {
            throw ValidationError(problem)
        }
        guard txnOps >= 1 else { throw ValidationError("--txn-ops must be at least 1") }
        guard keySpaceSize >= txnOps else {
            throw ValidationError("--key-space-size (\(keySpaceSize)) must be at least --txn-ops (\(txnOps))")
        }
    }

    func run() async throws {
        let value = Data(randomBytes(valSize, seed: 0x5EED))
        let reports = try await Connections.with(global) { connections in
            await runLoad(
                operation: "txn-put",
                classes: ["txn-put"],
                options: global,
                connections: connections,
                ratePerSecond: rate
            ) { [keySize, txnOps, keySpaceSize] clientIndex in
                TxnPutWorker(
                    kv: Etcdserverpb_KV.Client(wrapping: connections.client(for: clientIndex)),
                    metadata: connections.metadata,
                    keySize: keySize,
                    value: value,
                    txnOps: txnOps,
                    keySpaceSize: keySpaceSize
                )
            }
        }
        emit(reports.map { (heading: nil, report: $0) }, options: global)
    }
}

/// One client's Txns; keeps one request with `txnOps` Put operations and rewrites their keys.
struct TxnPutWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    private var request: ClientRequest<Etcdserverpb_TxnRequest>
    private var key: [UInt8]
    private let txnOps: Int
    private let keySpaceSize: Int

    init(
        kv: Etcdserverpb_KV.Client<Connections.Transport>,
        metadata: Metadata,
        keySize: Int,
        value: Data,
        txnOps: Int,
        keySpaceSize: Int
    ) {
        self.kv = kv
        key = [UInt8](repeating: 0, count: keySize)
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key)
        put.value = value
        var operation = Etcdserverpb_RequestOp()
        operation.requestPut = put
        var message = Etcdserverpb_TxnRequest()
        message.success = [Etcdserverpb_RequestOp](repeating: operation, count: txnOps)
        request = ClientRequest(message: message, metadata: metadata)
        self.txnOps = txnOps
        self.keySpaceSize = keySpaceSize
    }

    mutating func prepare(_ index: Int) -> Int {
        for operation in 0..<txnOps {
            KeyEncoding.put((index * txnOps + operation) % keySpaceSize, into: &key)
            request.message.success[operation].requestPut.key = Data(key)
        }
        return 0
    }

    func send() async throws {
        _ = try await kv.txn(request: request)
    }
}
