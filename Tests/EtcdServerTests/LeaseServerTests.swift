import EtcdAPI
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import Testing

/// Runs `body` with KV, Lease and Watch clients on one connection to 127.0.0.1:`port`.
private func withClients<Result: Sendable>(
    port: Int,
    _ body: @Sendable (
        Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix>,
        Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix>
    ) async throws -> Result
) async throws -> Result {
    try await withKVClient(port: port) { kv, client in
        try await body(kv, Etcdserverpb_Lease.Client(wrapping: client), Etcdserverpb_Watch.Client(wrapping: client))
    }
}

private func grant(_ lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix>, id: Int64 = 0, ttl: Int64) async throws -> Int64 {
    var request = Etcdserverpb_LeaseGrantRequest()
    request.id = id
    request.ttl = ttl
    return try await lease.leaseGrant(request).id
}

private func put(_ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, _ key: String, lease: Int64) async throws {
    var request = Etcdserverpb_PutRequest()
    request.key = Data(key)
    request.value = Data("v")
    request.lease = lease
    _ = try await kv.put(request)
}

private func count(_ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, prefix: String) async throws -> Int64 {
    var request = Etcdserverpb_RangeRequest()
    request.key = Data(prefix)
    request.rangeEnd = Data(prefix + "\u{7f}")
    request.countOnly = true
    return try await kv.range(request).count
}

private func keepAlive(_ lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix>, _ id: Int64) async throws -> Int64 {
    var message = Etcdserverpb_LeaseKeepAliveRequest()
    message.id = id
    let request = message
    return try await lease.leaseKeepAlive(
        requestProducer: { writer in try await writer.write(request) },
        onResponse: { response in
            for try await message in response.messages { return message.ttl }
            return Int64(-100)
        }
    )
}

private func timeToLive(_ lease: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix>, _ id: Int64) async throws
    -> Etcdserverpb_LeaseTimeToLiveResponse
{
    var request = Etcdserverpb_LeaseTimeToLiveRequest()
    request.id = id
    request.keys = true
    return try await lease.leaseTimeToLive(request)
}

@Suite("Leases on a running server")
struct LeaseServerTests {
    @Test("a lease's keys go when its TTL runs out, within a tolerance, and not before")
    func expiry() async throws {
        try await withServer { port in
            try await withClients(port: port) { kv, lease, _ in
                // Measured from before the grant is sent: the server cannot start the TTL earlier.
                let granted = ContinuousClock.now
                // Long enough that the two puts after the grant still find the lease when a loaded
                // CI machine holds this client back for seconds.
                let id = try await grant(lease, ttl: 4)
                try await put(kv, "expiring/a", lease: id)
                try await put(kv, "expiring/b", lease: id)
                while try await count(kv, prefix: "expiring/") > 0 {
                    try await Task.sleep(for: .milliseconds(20))
                    // Generous: a loaded CI machine delays the checks and the client, not the TTL.
                    #expect(granted.duration(to: .now) < .seconds(30), "keys outlived their 4 s lease by far")
                }
                let lived = granted.duration(to: .now)
                #expect(lived >= .seconds(4), "keys went after \(lived), before the 4 s TTL")
                #expect(try await timeToLive(lease, id).ttl == -1)
                #expect(try await keepAlive(lease, id) == 0)
            }
        }
    }

    @Test("keepalives keep a lease alive past its TTL; time-to-live reports the remainder, granted TTL and keys")
    func keepAlives() async throws {
        try await withServer { port in
            try await withClients(port: port) { kv, lease, _ in
                // Renewed every 0.5 s for 8 s, past its 6 s TTL; a renewal may be late by 5 s on a
                // loaded machine without the lease expiring.
                let id = try await grant(lease, id: 0x42, ttl: 6)
                try await put(kv, "kept", lease: id)
                for _ in 0..<16 {
                    try await Task.sleep(for: .milliseconds(500))
                    #expect(try await keepAlive(lease, id) == 6)
                }
                #expect(try await count(kv, prefix: "kept") == 1)
                let status = try await timeToLive(lease, id)
                #expect(status.grantedTtl == 6)
                #expect((0...6).contains(status.ttl))
                #expect(status.keys == [Data("kept")])
                #expect(try await keepAlive(lease, 0x43) == 0)
                var list = try await lease.leaseLeases(Etcdserverpb_LeaseLeasesRequest())
                #expect(list.leases.map(\.id) == [0x42])
                _ = try await lease.leaseRevoke(.with { $0.id = id })
                list = try await lease.leaseLeases(Etcdserverpb_LeaseLeasesRequest())
                #expect(list.leases.isEmpty)
            }
        }
    }

    @Test("a revocation deletes all of a lease's keys in one revision, and a watcher gets them in one response")
    func revokeIsAtomicForWatchers() async throws {
        try await withServer { port in
            try await withClients(port: port) { kv, lease, watch in
                let id = try await grant(lease, ttl: 600)
                for index in 0..<20 { try await put(kv, "held/\(index)", lease: id) }
                let stream = WatchStreamClient(watch)
                stream.create(key: "held/", rangeEnd: "held/\u{7f}")
                _ = try await stream.waitFor("the watch to be created") { $0.contains { $0.created } }
                let revoked = try await lease.leaseRevoke(.with { $0.id = id })
                let responses = try await stream.waitFor("the deletes") { responses in
                    responses.reduce(0) { $0 + $1.events.count } >= 20
                }
                let withEvents = responses.filter { !$0.events.isEmpty }
                #expect(withEvents.count == 1)
                #expect(withEvents.first?.events.allSatisfy { $0.type == .delete && $0.kv.modRevision == revoked.header.revision } == true)
                #expect(try await count(kv, prefix: "held/") == 0)
                await stream.close()
            }
        }
    }

    @Test(
        "keepalives of expired leases awaiting revocation do not hold up a live lease's renewal on the same stream",
        .timeLimit(.minutes(1))
    )
    func expiredLeasesDoNotBlockTheStream() async throws {
        // One revocation per tick: the 30 leases that expire together stay expired but not yet
        // revoked for up to 3 s, and a keepalive for one is answered (TTL 0) only once its
        // revocation applies.
        try await withServer(configure: { $0.leaseRevocationsPerSecond = 10 }) { port in
            try await withClients(port: port) { _, lease, _ in
                let expiring = (0..<30).map { 0x1000 + Int64($0) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for id in expiring { group.addTask { _ = try await grant(lease, id: id, ttl: 2) } }
                    try await group.waitForAll()
                }
                // Every TTL started before its grant was answered, so all have run out 2 s from now.
                let granted = ContinuousClock.now
                let live = try await grant(lease, id: 0x42, ttl: 60)
                // A second past that: a loaded machine (CI) once renewed some of them at 2.3 s. At
                // one revocation per 100 ms, about 20 of the 30 still await revocation at 3 s.
                try await Task.sleep(until: granted.advanced(by: .milliseconds(3_000)))
                let requests = (expiring + [live]).map { id in Etcdserverpb_LeaseKeepAliveRequest.with { $0.id = id } }
                // The stream stays open until every answer is in: closing it would end the server's side.
                let (allAnswered, signalAllAnswered) = AsyncStream<Void>.makeStream()
                let answers = try await lease.leaseKeepAlive(
                    requestProducer: { writer in
                        try await writer.write(contentsOf: requests)
                        for await _ in allAnswered {}
                    },
                    onResponse: { response in
                        var answers: [(id: Int64, ttl: Int64)] = []
                        for try await message in response.messages {
                            answers.append((message.id, message.ttl))
                            if answers.count == requests.count { signalAllAnswered.finish() }
                        }
                        signalAllAnswered.finish()
                        return answers
                    }
                )
                #expect(answers.count == requests.count)
                #expect(answers.filter { $0.id != live }.allSatisfy { $0.ttl == 0 })
                let livePosition = try #require(answers.firstIndex { $0.id == live })
                #expect(answers[livePosition].ttl == 60)
                // Answered strictly in turn, the live lease would come last, after every revocation.
                #expect(
                    livePosition < answers.count - 1,
                    "the live lease was answered after all \(expiring.count) expired ones")
            }
        }
    }

    @Test("leases and their keys survive a restart, and still expire afterwards")
    func restart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lease-restart-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ids = try await withServer(dataDirectory: directory) { port in
            try await withClients(port: port) { kv, lease, _ in
                let long = try await grant(lease, ttl: 600)
                let short = try await grant(lease, ttl: 3)
                try await put(kv, "long", lease: long)
                try await put(kv, "short", lease: short)
                return (long, short)
            }
        }
        try await withServer(dataDirectory: directory) { port in
            try await withClients(port: port) { kv, lease, _ in
                let long = try await timeToLive(lease, ids.0)
                #expect(long.grantedTtl == 600)
                #expect(long.keys == [Data("long")])
                #expect(try await timeToLive(lease, ids.1).keys == [Data("short")])
                let restarted = ContinuousClock.now
                while try await count(kv, prefix: "short") > 0 {
                    try await Task.sleep(for: .milliseconds(50))
                    #expect(restarted.duration(to: .now) < .seconds(30))
                }
                #expect(try await count(kv, prefix: "long") == 1)
            }
        }
    }
}
