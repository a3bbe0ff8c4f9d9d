import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore

/// `range KEY [END]`: the same Range over and over, linearizable (`l`) or serializable (`s`).
struct RangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "range", abstract: "Benchmark range.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Key to range over.")
    var key: String

    @Argument(help: "Range end (exclusive); omit for a single key.")
    var end: String?

    @Option(help: "Linearizable (l) or Serializable (s).")
    var consistency: String = "l"

    @Option(help: "Maximum number of keys returned (0: no limit).")
    var limit: Int64 = 0

    @Flag(help: "Only count the keys.")
    var countOnly = false

    @Option(help: "Maximum ranges per second (0 is no limit).")
    var rate: Int = 0

    func validate() throws {
        guard consistency == "l" || consistency == "s" else {
            throw ValidationError("--consistency must be l or s")
        }
    }

    func run() async throws {
        var message = Etcdserverpb_RangeRequest()
        message.key = Data(key.utf8)
        if let end {
            message.rangeEnd = Data(end.utf8)
        }
        message.serializable = consistency == "s"
        message.limit = limit
        message.countOnly = countOnly
        if global.writeOut == .simple {
            print(consistency == "l" ? "bench with linearizable range" : "bench with serializable range")
        }
        let reports = try await Connections.with(global) { connections in
            let request = ClientRequest(message: message, metadata: connections.metadata)
            return await runLoad(
                operation: "range",
                classes: ["range"],
                options: global,
                connections: connections,
                ratePerSecond: rate
            ) { clientIndex in
                RangeWorker(kv: Etcdserverpb_KV.Client(wrapping: connections.client(for: clientIndex)), request: request)
            }
        }
        emit(reports.map { (heading: nil, report: $0) }, options: global)
    }
}

/// One client's Ranges: the request never changes.
struct RangeWorker: LoadWorker {
    let kv: Etcdserverpb_KV.Client<Connections.Transport>
    let request: ClientRequest<Etcdserverpb_RangeRequest>

    func prepare(_ index: Int) -> Int { 0 }

    func send() async throws {
        _ = try await kv.range(request: request)
    }
}
