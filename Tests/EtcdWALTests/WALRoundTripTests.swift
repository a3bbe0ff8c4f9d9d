import EtcdRaft
@testable import EtcdWAL
import Testing

@Suite struct WALRoundTripTests {
    @Test("entries, hard state and metadata written are read back")
    func roundTrip() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            try wal.save(hardState: HardState(term: 1, vote: NodeID(1), commit: 0), entries: [], sync: true)
            try wal.save(hardState: HardState(term: 1, vote: NodeID(1), commit: 2), entries: (1...3).map { entry($0) }, sync: true)
            try wal.save(hardState: nil, entries: [entry(4, size: 0)], sync: false)
            try wal.close()

            let (reopened, contents) = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            defer { try? reopened.close() }
            #expect(contents.metadata == testMetadata)
            #expect(contents.hardState == HardState(term: 1, vote: NodeID(1), commit: 2))
            #expect(contents.entries == (1...3).map { entry($0) } + [entry(4, size: 0)])
            #expect(reopened.lastIndex == 4)
            #expect(try segmentNames(in: directory) == ["0000000000000000-0000000000000000.wal"])
        }
    }

    @Test("every record kind survives a round trip through the frame codec")
    func recordCodec() {
        let records: [WALRecord] = [
            .metadata([]), .metadata([1, 2, 3]), .entry(Entry(term: 7, index: 9, type: .confChange, data: [9, 8])),
            .entry(entry(UInt64.max, term: UInt64.max, size: 0)), .hardState(HardState(term: 3, vote: NodeID(5), commit: 2)),
            .crc(0xDEAD_BEEF), .snapshot(WALSnapshotMarker(index: 10, term: 4)),
        ]
        var bytes: [UInt8] = []
        var chain: UInt32 = 0x1234_5678
        for record in records { chain = RecordFrame.append(record, previousCRC: chain, to: &bytes) }
        #expect(bytes.count % 8 == 0)
        let scan = SegmentScan(bytes)
        #expect(scan.frames.map(\.record) == records)
        #expect(scan.frames.first?.previousCRC == 0x1234_5678)
        #expect(scan.frames.last?.crc == chain)
        #expect(scan.end == .clean(offset: bytes.count))
    }

    @Test("a thousand entries in many saves rotate across small segments and all come back")
    func rotation() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            var index: UInt64 = 0
            for batch in 0..<200 {
                let batchEntries = (1...5).map { offset in entry(index + UInt64(offset), size: (batch * 7 + offset) % 90) }
                index += 5
                try wal.save(hardState: HardState(term: 1, commit: index - 5), entries: batchEntries, sync: batch % 10 == 0)
            }
            try wal.close()
            let names = try segmentNames(in: directory)
            #expect(names.count > 5)
            // Sequence numbers count up; each segment names the first index expected in it.
            for (position, name) in names.enumerated() {
                let segment = try #require(SegmentName(fileName: name))
                #expect(segment.sequence == UInt64(position))
            }
            // Every segment but the last was truncated to its data when the next one started.
            for name in names.dropLast() {
                let bytes = try readFile(directory + "/" + name)
                #expect(SegmentScan(bytes).end == .clean(offset: bytes.count))
            }

            let (reopened, contents) = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            #expect(contents.entries.map(\.index) == Array(1...1000))
            #expect(contents.entries[499] == entry(500, size: (99 * 7 + 5) % 90))
            #expect(contents.hardState.commit == 995)
            // The segments each start where the index in their names says.
            let starts = names.compactMap { SegmentName(fileName: $0)?.firstIndex }
            #expect(starts == starts.sorted())
            try reopened.save(hardState: nil, entries: [entry(1001)], sync: true)
            try reopened.close()
            let (_, again) = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            #expect(again.entries.last == entry(1001))
        }
    }

    @Test("open at a snapshot marker returns only the entries after it")
    func openAtSnapshot() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            try wal.save(hardState: HardState(term: 2, commit: 8), entries: (1...10).map { entry($0, term: 2) }, sync: true)
            try wal.saveSnapshot(WALSnapshotMarker(index: 5, term: 2))
            try wal.save(hardState: HardState(term: 2, commit: 10), entries: (11...12).map { entry($0, term: 2) }, sync: true)
            try wal.close()

            let (atFive, contents) = try WAL.open(directory: directory, at: WALSnapshotMarker(index: 5, term: 2), options: smallSegments)
            #expect(contents.entries.map(\.index) == Array(6...12))
            #expect(contents.snapshot == WALSnapshotMarker(index: 5, term: 2))
            #expect(contents.hardState.commit == 10)
            try atFive.close()

            #expect(throws: WALError.snapshotNotFound(index: 7, term: 2)) {
                _ = try WAL.open(directory: directory, at: WALSnapshotMarker(index: 7, term: 2), options: smallSegments)
            }
            let mismatch = #expect(throws: WALError.self) {
                _ = try WAL.open(directory: directory, at: WALSnapshotMarker(index: 5, term: 3), options: smallSegments)
            }
            guard case .snapshotMismatch(_, _, 5, 3, 2) = mismatch else {
                Issue.record("expected a snapshot mismatch, got \(String(describing: mismatch))")
                return
            }
            #expect(try WAL.snapshotMarkers(directory: directory) == [.zero, WALSnapshotMarker(index: 5, term: 2)])
        }
    }

    @Test("a snapshot from the leader past the log: the next entries follow the marker")
    func snapshotPastLog() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            try wal.save(hardState: HardState(term: 1, commit: 1), entries: (1...3).map { entry($0) }, sync: true)
            try wal.saveSnapshot(WALSnapshotMarker(index: 50, term: 3))
            try wal.save(hardState: HardState(term: 3, commit: 50), entries: [entry(51, term: 3)], sync: true)
            try wal.close()
            let (_, contents) = try WAL.open(directory: directory, at: WALSnapshotMarker(index: 50, term: 3), options: smallSegments)
            #expect(contents.entries == [entry(51, term: 3)])
            // Starting from the empty snapshot would leave a gap where the snapshot stood.
            #expect(throws: WALError.self) { _ = try WAL.open(directory: directory, at: .zero, options: smallSegments) }
        }
    }

    @Test("later entries at an index replace earlier ones and everything after them")
    func conflictingTail() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            try wal.save(hardState: HardState(term: 1, commit: 2), entries: (1...5).map { entry($0) }, sync: true)
            // A new leader of term 2 overwrites the uncommitted 4 and 5.
            try wal.save(hardState: HardState(term: 2, commit: 3), entries: [entry(4, term: 2)], sync: true)
            #expect(wal.lastIndex == 4)
            try wal.save(hardState: nil, entries: [entry(5, term: 2), entry(6, term: 2)], sync: true)
            try wal.close()
            let (_, contents) = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            #expect(contents.entries == [entry(1), entry(2), entry(3), entry(4, term: 2), entry(5, term: 2), entry(6, term: 2)])
        }
    }

    @Test("create refuses a directory that already holds a log; a second opener is locked out")
    func createAndLock() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory + "/member/wal", metadata: testMetadata, options: smallSegments)
            #expect(WAL.exists(directory: directory + "/member/wal"))
            #expect(!WAL.exists(directory: directory))
            #expect(throws: WALError.alreadyExists(directory: directory + "/member/wal")) {
                _ = try WAL.create(directory: directory + "/member/wal", metadata: testMetadata)
            }
            let locked = #expect(throws: WALError.self) {
                _ = try WAL.open(directory: directory + "/member/wal", at: .zero, options: smallSegments)
            }
            guard case .locked = locked else {
                Issue.record("expected .locked, got \(String(describing: locked))")
                return
            }
            try wal.close()
            let (reopened, _) = try WAL.open(directory: directory + "/member/wal", at: .zero, options: smallSegments)
            try reopened.close()
            #expect(throws: WALError.notFound(directory: directory)) { _ = try WAL.open(directory: directory, at: .zero, options: smallSegments) }
        }
    }

    @Test("the in-memory file system runs the same log")
    func memoryFileSystem() throws {
        let fileSystem = MemoryFileSystem()
        let wal = try WAL.create(directory: "/data/wal", metadata: testMetadata, fileSystem: fileSystem, options: smallSegments)
        for index in 1...300 as ClosedRange<UInt64> {
            try wal.save(hardState: HardState(term: 1, commit: index - 1), entries: [entry(index, size: 40)], sync: true)
        }
        try wal.close()
        #expect(try fileSystem.fileNames(in: "/data/wal").count > 3)
        let (_, contents) = try WAL.open(directory: "/data/wal", at: .zero, fileSystem: fileSystem, options: smallSegments)
        #expect(contents.entries.map(\.index) == Array(1...300))
        #expect(contents.hardState.commit == 299)
    }

    @Test("an I/O failure poisons the WAL: later saves rethrow it")
    func poisoned() throws {
        let fileSystem = MemoryFileSystem()
        let wal = try WAL.create(directory: "/wal", metadata: [], fileSystem: fileSystem, options: smallSegments)
        // Closing the tail's descriptor underneath makes the next write fail.
        wal.segments[0].file.close()
        #expect(throws: WALError.self) { try wal.save(hardState: nil, entries: [entry(1)], sync: true) }
        let failure = try #require(wal.failure)
        // The error names the segment by its final name, not the temporary one it was created as.
        #expect(failure.description.contains("/wal/0000000000000000-0000000000000000.wal failed"))
        #expect(throws: failure) { try wal.save(hardState: HardState(term: 1), entries: [], sync: false) }
    }
}
