import EtcdAPI
import Foundation

/// The shape of the watch-mixed workload (issue 6), with no I/O: which watchers each stream
/// creates, which key each put writes, and how many events the puts that succeeded must yield.
///
/// Distinct keys `<prefix>/d/<i>` are each watched by exactly one watcher; `hotWatchers` watchers
/// all watch the prefix `<prefix>/h/`. Even puts write the distinct keys round robin (one event
/// each), odd puts write a key under the hot prefix (one event per hot watcher), so one run shows
/// both the many-quiet-watchers cost and the fan-out cost of a popular prefix.
struct WatchMixedPlan: Sendable, Equatable {
    /// Which watchers an event was delivered to; the raw value indexes per-class recorders.
    enum EventClass: Int, CaseIterable, Sendable {
        case distinct = 0
        case hot = 1
    }

    /// What one watcher watches.
    enum Target: Equatable, Sendable {
        case key([UInt8])
        /// Every key starting with the bytes.
        case prefix([UInt8])
    }

    var prefix: [UInt8]
    var distinctWatchers: Int
    /// Streams carrying the distinct-key watchers; key `i` goes on stream `i % distinctStreams`,
    /// so that consecutive puts land on different streams.
    var distinctStreams: Int
    var hotWatchers: Int
    /// Streams of their own for the hot watchers (watcher `h` on `h % hotStreams`), or 0 to spread
    /// them over the distinct streams (watcher `h` on stream `h % distinctStreams`).
    var hotStreams: Int
    /// How many different keys the odd puts cycle through under the hot prefix.
    var hotKeys: Int

    init(
        prefix: String,
        distinctWatchers: Int,
        distinctStreams: Int,
        hotWatchers: Int,
        hotStreams: Int,
        hotKeys: Int
    ) {
        precondition(distinctWatchers >= 0 && hotWatchers >= 0, "watcher counts must not be negative")
        precondition(distinctWatchers + hotWatchers >= 1, "the plan needs at least one watcher")
        precondition(distinctStreams >= 1 && hotStreams >= 0 && hotKeys >= 1, "bad stream or key counts")
        self.prefix = Array(prefix.utf8)
        self.distinctWatchers = distinctWatchers
        self.distinctStreams = distinctStreams
        self.hotWatchers = hotWatchers
        self.hotStreams = hotStreams
        self.hotKeys = hotKeys
    }

    var streamCount: Int { distinctStreams + hotStreams }
    var watcherCount: Int { distinctWatchers + hotWatchers }
    var hotPrefix: [UInt8] { prefix + Array("/h/".utf8) }

    func distinctKey(_ number: Int) -> [UInt8] { prefix + Array("/d/\(number)".utf8) }
    func hotKey(_ number: Int) -> [UInt8] { hotPrefix + Array("\(number)".utf8) }

    /// The watchers stream `stream` creates, in order: its distinct keys, then its hot watchers.
    func targets(onStream stream: Int) -> [Target] {
        precondition((0..<streamCount).contains(stream), "stream \(stream) outside 0..<\(streamCount)")
        var targets: [Target] = []
        if stream < distinctStreams {
            targets += stride(from: stream, to: distinctWatchers, by: distinctStreams).map { .key(distinctKey($0)) }
        }
        let hotOnThisStream: Int
        if hotStreams == 0 {
            hotOnThisStream = Self.share(of: hotWatchers, slot: stream, slots: distinctStreams)
        } else {
            hotOnThisStream =
                stream >= distinctStreams
                ? Self.share(of: hotWatchers, slot: stream - distinctStreams, slots: hotStreams) : 0
        }
        targets += Array(repeating: .prefix(hotPrefix), count: hotOnThisStream)
        return targets
    }

    /// How many of `total` items numbered round robin over `slots` land on `slot`.
    static func share(of total: Int, slot: Int, slots: Int) -> Int {
        total / slots + (slot < total % slots ? 1 : 0)
    }

    /// The key put number `index` writes, and which watchers will see it.
    func put(_ index: Int) -> (key: [UInt8], eventClass: EventClass) {
        let round = index / 2
        if index % 2 == 0 {
            // With no distinct watchers the even puts still happen (the rate stays what was asked),
            // on keys nobody watches.
            return (distinctKey(round % max(distinctWatchers, 1)), .distinct)
        }
        return (hotKey(round % hotKeys), .hot)
    }

    /// Events the watchers must receive for the given numbers of successful puts of each class:
    /// every distinct key has one watcher, every hot key all the hot watchers.
    func expectedEvents(distinctPuts: Int, hotPuts: Int) -> (distinct: Int, hot: Int) {
        (distinct: distinctWatchers > 0 ? distinctPuts : 0, hot: hotPuts * hotWatchers)
    }

    /// The class of an event on `key`: hot if the key is under the hot prefix.
    func eventClass(ofKey key: Data) -> EventClass {
        key.starts(with: hotPrefix) ? .hot : .distinct
    }

    /// etcd's range end for "every key with this prefix": the prefix with its last byte below 0xff
    /// incremented and everything after that byte dropped; a prefix of only 0xff bytes has no such
    /// end, and etcd spells "to the end of the key space" as the single byte 0.
    static func rangeEnd(ofPrefix prefix: [UInt8]) -> [UInt8] {
        guard let last = prefix.lastIndex(where: { $0 < 0xff }) else { return [0] }
        var end = Array(prefix[...last])
        end[last] += 1
        return end
    }

    /// The key and range end one watcher asks for (an empty end watches the key alone).
    static func range(of target: Target) -> (key: [UInt8], rangeEnd: [UInt8]) {
        switch target {
        case .key(let key):
            return (key, [])
        case .prefix(let prefix):
            return (prefix, rangeEnd(ofPrefix: prefix))
        }
    }

    /// The create request for one watcher.
    static func createRequest(for target: Target) -> Etcdserverpb_WatchCreateRequest {
        let range = range(of: target)
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(range.key)
        create.rangeEnd = Data(range.rangeEnd)
        return create
    }
}
