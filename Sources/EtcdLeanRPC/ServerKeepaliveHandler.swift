public import NIOCore
public import NIOHTTP2

/// The server side of gRPC keepalive, as grpc-go's server does it (etcd's
/// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout`): when nothing has been read from
/// a connection for `interval`, it sends a PING; if nothing at all (the PING's ACK or any other
/// frame) arrives within `timeout` after that, the peer is gone and the connection is closed,
/// which ends its calls. Sits after `NIOHTTP2Handler`, where every frame read passes by.
public final class ServerKeepaliveHandler: ChannelInboundHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias InboundOut = HTTP2Frame
    public typealias OutboundOut = HTTP2Frame

    private let interval: TimeAmount
    private let timeout: TimeAmount
    private var readSinceCheck = false
    private var awaitingAnswer = false
    /// Of the timeout after the outstanding PING, what the timer has not yet slept.
    private var timeoutLeft = TimeAmount.zero
    private var timer: Scheduled<Void>?

    /// The PING payload, so that its ACK can be told apart in a capture; any ACK or frame counts.
    static let pingData = HTTP2PingData(withInteger: 0x6574_6364_6b61_6c76)

    public init(interval: TimeAmount, timeout: TimeAmount) {
        precondition(interval > .zero && timeout > .zero, "keepalive interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { schedule(in: interval, context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        if timer == nil { schedule(in: interval, context: context) }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readSinceCheck = true
        context.fireChannelRead(data)
    }

    private func schedule(in delay: TimeAmount, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = bound.value
            handler.check(context: context)
        }
    }

    /// grpc-go's keepalive loop: wakes at least every `interval`, and while a PING is out, in
    /// steps that add up to `timeout`.
    private func check(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if readSinceCheck {
            // The peer is alive; look again one interval from now.
            readSinceCheck = false
            awaitingAnswer = false
            schedule(in: interval, context: context)
            return
        }
        if awaitingAnswer && timeoutLeft <= .zero {
            // grpc-go: "keepalive ping not acked within timeout" — the connection is dropped.
            context.close(promise: nil)
            return
        }
        if !awaitingAnswer {
            awaitingAnswer = true
            timeoutLeft = timeout
            context.writeAndFlush(
                wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.pingData, ack: false))), promise: nil)
        }
        let sleep = min(interval, timeoutLeft)
        timeoutLeft = timeoutLeft - sleep
        schedule(in: sleep, context: context)
    }
}
