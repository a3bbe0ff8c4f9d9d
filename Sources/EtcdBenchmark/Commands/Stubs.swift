import ArgumentParser

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch")
    @OptionGroup var global: GlobalOptions
}
struct WatchLatencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch-latency")
    @OptionGroup var global: GlobalOptions
}
struct LeaseKeepAliveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lease-keepalive")
    @OptionGroup var global: GlobalOptions
}
