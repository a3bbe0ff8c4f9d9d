import ArgumentParser
import EtcdAPI
import EtcdRaft
import Foundation
import GRPCCore

/// `put`: unary Puts of `--key-size`-byte keys drawn from `--key-space-size` keys (at random, or in
/// order with `--sequential-keys`) with one fixed random `--val-size`-byte value, as etcd's
/// benchmark does.
struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Benchmark put.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Key size of put request.")
    var keySize: Int = 8

    @Option(help: "Value size of put request.")
    var valSize: Int = 8

    @Option(help: "Maximum possible keys.")
    var keySpaceSize: Int = 1

    @Flag(help: "Use sequential keys.")
    var sequentialKeys = false

    @Option(help: "Maximum puts per second (0 is no limit).")
    var rate: Int = 0

    func validate() throws {
        if let problem = KeyEncoding.validate(keySize: keySize, keySpaceSize: keySpaceSize) {
            throw ValidationError(problem)
        }
        guard valSize >= 0, rate >= 0 else { throw ValidationError("--val-size and --rate must not be negative") }
    }

    func run() async throws {
        let value = Data(randomBytes(valSize, seed: 0x5EED))
        let reports = try await Connections.with(global) { connections in
            await runLoad(
                operation: "put",
                classes: ["put"],
                options: global,
                connections: connections,
                ratePerSecond: rate
            ) { [keySize, keySpaceSize, sequentialKeys] clientIndex in
                PutWorker(
                    kv: Etcdserverpb_KV.Client(wrapping: connections.client(for: clientIndex)),
                    metadata: connections.metadata,
                    keySize: keySize,
                    value: value,
                    keySpaceSize: keySpaceSize,
                    sequentialKeys: sequentialKeys,
                    seed: UInt64(clientIndex)
                )
            }
        }
        emit(reports.map { (heading: nil, report: $0) }, options: global)
    }
}

/// One client's Puts; keeps one request and rewrites only its key.
struct PutWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    private var request: ClientRequest<Etcdserverpb_PutRequest>
    private var key: [UInt8]
    private let keySpaceSize: Int
    private let sequentialKeys: Bool
    private var random: SplitMix64

    init(
        kv: Etcdserverpb_KV.Client<Connections.Transport>,
        metadata: Metadata,
        keySize: Int,
        value: Data,
        keySpaceSize: Int,
        sequentialKeys: Bool,
        seed: UInt64
    ) {
        self.kv = kv
        key = [UInt8](repeating: 0, count: keySize)
        var message = Etcdserverpb_PutRequest()
        message.key = Data(key)
        message.value = value
        request = ClientRequest(message: message, metadata: metadata)
        self.keySpaceSize = keySpaceSize
        self.sequentialKeys = sequentialKeys
        random = SplitMix64(seed: seed)
    }

    mutating func prepare(_ index: Int) -> Int {
        // With one key (etcd's default) the request never changes.
        if keySpaceSize > 1 {
            let number = sequentialKeys ? index % keySpaceSize : Int(random.next() % UInt64(keySpaceSize))
            KeyEncoding.put(number, into: &key)
            request.message.key = Data(key)
        }
        return 0
    }

    func send() async throws {
        _ = try await kv.put(request: request)
    }
}
