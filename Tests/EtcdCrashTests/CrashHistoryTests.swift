import Testing

/// The checker of the crash test, with fabricated histories: a checker that cannot see a lost
/// write would let every crash pass.
@Suite("Crash test checker")
struct CrashHistoryTests {
    static func put(_ label: String, _ key: String, _ value: String) -> CrashWrite {
        CrashWrite(label: label, effects: [.init(key: key, effect: .put(value: value))])
    }

    static func delete(_ label: String, _ key: String) -> CrashWrite {
        CrashWrite(label: label, effects: [.init(key: key, effect: .delete)])
    }

    /// a = a1 at 2; b put at 3 and 4 and deleted at 5 (acknowledged out of order); a txn at 6 put
    /// c = c1 and deleted d.
    static func baseHistory() -> CrashHistory {
        var history = CrashHistory()
        history.acknowledged(put("p1", "a", "a1"), revision: 2)
        history.acknowledged(put("p2", "b", "b1"), revision: 3)
        // Acknowledged out of order: the later revision wins whatever the arrival order.
        history.acknowledged(delete("d1", "b"), revision: 5)
        history.acknowledged(put("p3", "b", "b0"), revision: 4)
        history.acknowledged(
            CrashWrite(
                label: "t1",
                effects: [.init(key: "c", effect: .put(value: "c1")), .init(key: "d", effect: .delete)]
            ),
            revision: 6
        )
        return history
    }

    static let intact: [String: ObservedKey] = [
        "a": ObservedKey(value: "a1", modRevision: 2),
        "c": ObservedKey(value: "c1", modRevision: 6),
    ]

    @Test("a store that kept every acknowledged write passes")
    func intactStorePasses() {
        let history = Self.baseHistory()
        #expect(history.check(observed: Self.intact, storeRevision: 6).isEmpty)
        #expect(history.check(observed: Self.intact, storeRevision: 9).isEmpty)
    }

    @Test("a missing acknowledged put is found")
    func missingWriteFails() {
        var observed = Self.intact
        observed["c"] = nil
        let problems = Self.baseHistory().check(observed: observed, storeRevision: 6)
        #expect(problems.count == 1)
        #expect(problems.first?.hasPrefix("c is missing after the restart; promised: c1 at revision 6 (t1[") == true)
    }

    @Test("an older value, or the right value with another mod_revision, is found")
    func olderValueFails() {
        var history = Self.baseHistory()
        history.acknowledged(Self.put("p4", "a", "a2"), revision: 7)
        #expect(
            history.check(observed: Self.intact, storeRevision: 7) == [
                "a = a1@2 after the restart; promised: a2 at revision 7 (p4[put a2 a])"
            ]
        )
        var moved = Self.intact
        moved["a"] = ObservedKey(value: "a2", modRevision: 6)
        #expect(history.check(observed: moved, storeRevision: 7).count == 1)
    }

    @Test("an acknowledged delete stays deleted unless something re-put the key")
    func resurrectedKeyFails() {
        var observed = Self.intact
        observed["b"] = ObservedKey(value: "b0", modRevision: 4)
        let problems = Self.baseHistory().check(observed: observed, storeRevision: 6)
        #expect(problems == ["b = b0@4 after the restart; promised: absent at revision 5 (d1[delete b])"])
        observed["b"] = nil
        observed["d"] = ObservedKey(value: "d0", modRevision: 1)
        #expect(
            Self.baseHistory().check(observed: observed, storeRevision: 6) == [
                "d = d0@1 after the restart; promised: absent at revision 6 (t1[put c1 c, delete d])"
            ]
        )
    }

    @Test("in-flight writes may or may not have landed, but only after what was acknowledged")
    func inFlightWrites() {
        var history = Self.baseHistory()
        history.inFlight(Self.put("f1", "a", "a9"))
        history.inFlight(Self.delete("f2", "c"))
        history.inFlight(Self.put("f3", "e", "e1"))
        // None landed.
        #expect(history.check(observed: Self.intact, storeRevision: 6).isEmpty)
        // All landed.
        let landed = ["a": ObservedKey(value: "a9", modRevision: 8), "e": ObservedKey(value: "e1", modRevision: 7)]
        #expect(history.check(observed: landed, storeRevision: 8).isEmpty)
        // An in-flight value cannot have landed before the acknowledged write it would hide.
        var early = Self.intact
        early["a"] = ObservedKey(value: "a9", modRevision: 1)
        #expect(history.check(observed: early, storeRevision: 8).count == 1)
        // An in-flight delete does not excuse the loss of another key.
        var lost = Self.intact
        lost["a"] = nil
        #expect(history.check(observed: lost, storeRevision: 6).count == 1)
    }

    @Test("revisions never go backwards: the store's, and those acknowledged after a restart")
    func revisionRegressionFails() {
        var history = Self.baseHistory()
        #expect(
            history.check(observed: Self.intact, storeRevision: 5) == [
                "the store's revision after the restart is 5, below the highest acknowledged revision 6",
                "c = c1@6 has a mod_revision above the store's revision 5",
            ]
        )
        history.settle(observed: Self.intact, storeRevision: 6)
        #expect(history.check(observed: Self.intact, storeRevision: 6).isEmpty)
        history.acknowledged(Self.put("p5", "e", "e1"), revision: 6)
        history.acknowledged(Self.put("p6", "f", "f1"), revision: 7)
        history.acknowledged(Self.put("p7", "g", "g1"), revision: 7)
        let observed = Self.intact.merging([
            "e": ObservedKey(value: "e1", modRevision: 6),
            "f": ObservedKey(value: "f1", modRevision: 7),
            "g": ObservedKey(value: "g1", modRevision: 7),
        ]) { $1 }
        #expect(
            history.check(observed: observed, storeRevision: 7) == [
                "revision went backwards: p5[put e1 e] was acknowledged at revision 6, but the store was already at "
                    + "revision 6 after the last restart",
                "two acknowledged writes got revision 7: p6[put f1 f] and p7[put g1 g]",
            ]
        )
    }

    @Test("a key nobody wrote, or a mod_revision above the store's revision, is found")
    func strangeKeysFail() {
        var observed = Self.intact
        observed["z"] = ObservedKey(value: "?", modRevision: 3)
        #expect(Self.baseHistory().check(observed: observed, storeRevision: 6) == ["z = ?@3 was never written"])
        #expect(Self.baseHistory().check(observed: Self.intact, storeRevision: 6).isEmpty)
        var history = Self.baseHistory()
        history.inFlight(Self.put("f1", "c", "c9"))
        observed = Self.intact
        observed["c"] = ObservedKey(value: "c9", modRevision: 9)
        #expect(
            history.check(observed: observed, storeRevision: 8) == [
                "c = c9@9 has a mod_revision above the store's revision 8"
            ]
        )
    }

    @Test("after a restart the observed state is the new promise, and deletes that removed nothing promise nothing")
    func settling() {
        var history = Self.baseHistory()
        history.inFlight(Self.put("f1", "e", "e1"))
        let observed = Self.intact.merging(["e": ObservedKey(value: "e1", modRevision: 7)]) { $1 }
        history.settle(observed: observed, storeRevision: 7)
        #expect(history.check(observed: observed, storeRevision: 7).isEmpty)
        // The in-flight write is settled: losing it now is a loss.
        #expect(history.check(observed: Self.intact, storeRevision: 7).count == 1)
        history.acknowledged(CrashWrite(label: "d0", effects: []), revision: 7)
        #expect(history.check(observed: observed, storeRevision: 7).isEmpty)
    }

    @Test("historical reads must show each acknowledged change at its revision")
    func historicalReads() {
        #expect(
            CrashHistory.checkHistorical(
                key: "a",
                effect: .put(value: "a1"),
                revision: 2,
                observed: .init(value: "a1", modRevision: 2)
            )
                == nil
        )
        #expect(CrashHistory.checkHistorical(key: "b", effect: .delete, revision: 5, observed: nil) == nil)
        #expect(
            CrashHistory.checkHistorical(key: "a", effect: .put(value: "a1"), revision: 2, observed: nil)
                == "a at revision 2 reads absent, but an acknowledged write did put a1 there"
        )
        #expect(
            CrashHistory.checkHistorical(
                key: "b",
                effect: .delete,
                revision: 5,
                observed: .init(value: "b0", modRevision: 4)
            )
                != nil
        )
    }
}
