import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import EtcdLeanRPC

@Suite("Lean gRPC: server keepalive")
struct KeepaliveTests {
    @Test("an idle connection is pinged after the interval; an answer keeps it, silence past the timeout closes it")
    func pingAndTimeout() async throws {
        let channel = try await Self.connectedChannel()
        await channel.testingEventLoop.advanceTime(by: .seconds(9))
        #expect(try await channel.readOutbound(as: HTTP2Frame.self) == nil, "no PING before the interval")
        await channel.testingEventLoop.advanceTime(by: .seconds(1))
        guard case .ping(_, let ack) = try await channel.readOutbound(as: HTTP2Frame.self)?.payload else {
            Issue.record("expected a PING after the interval")
            return
        }
        #expect(!ack)
        // The client answers: the connection stays, and the next PING waits for another idle interval.
        try await channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(ServerKeepaliveHandler.pingData, ack: true)))
        await channel.testingEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
        #expect(try await channel.readOutbound(as: HTTP2Frame.self) == nil)
        await channel.testingEventLoop.advanceTime(by: .seconds(10))
        guard case .ping = try await channel.readOutbound(as: HTTP2Frame.self)?.payload else {
            Issue.record("expected a second PING")
            return
        }
        // This one goes unanswered.
        await channel.testingEventLoop.advanceTime(by: .seconds(5))
        #expect(!channel.isActive, "closed once the PING went unanswered for the timeout")
    }

    @Test("traffic on the connection means no PING at all")
    func busyConnection() async throws {
        let channel = try await Self.connectedChannel()
        for _ in 0..<5 {
            await channel.testingEventLoop.advanceTime(by: .seconds(6))
            try await channel.writeInbound(HTTP2Frame(streamID: 1, payload: .windowUpdate(windowSizeIncrement: 1)))
            #expect(try await channel.readInbound(as: HTTP2Frame.self) != nil, "frames pass through")
        }
        #expect(try await channel.readOutbound(as: HTTP2Frame.self) == nil)
        #expect(channel.isActive)
        try await channel.close()
    }

    /// A connected testing channel with the keepalive handler: 10 s interval, 5 s timeout.
    static func connectedChannel() async throws -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(ServerKeepaliveHandler(interval: .seconds(10), timeout: .seconds(5)))
        }
        try await channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        return channel
    }
}
