/// Gives a peer back the HTTP/2 flow-control window its DATA used, for one stream or for the
/// connection: nothing is returned until half the target is used, then all of it in one
/// WINDOW_UPDATE, so that a steady sender never waits and a small call costs no frame.
///
/// The bytes are granted as they arrive because the reader holds them anyway (at most one
/// request message per stream, itself bounded by the message limit).
struct InboundWindow {
    let target: Int
    private(set) var unacknowledged = 0

    init(target: Int) {
        precondition(target > 0 && target <= Int(Int32.max), "a flow-control window is 1...2^31-1 bytes, got \(target)")
        self.target = target
    }

    /// Records `bytes` received; returns the increment to send now, if any.
    mutating func received(_ bytes: Int) -> Int? {
        unacknowledged += bytes
        guard unacknowledged >= target / 2, unacknowledged > 0 else { return nil }
        defer { unacknowledged = 0 }
        return unacknowledged
    }
}
