import EtcdRaft
@testable import EtcdWAL
import Testing

@Suite struct WALPurgeTests {
    @Test("segments before a snapshot are released and purged down to maxWALs; replay from the snapshot still works")
    func releaseAndPurge() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            for index in 1...300 as ClosedRange<UInt64> {
                try wal.save(hardState: HardState(term: 1, commit: index - 1), entries: [entry(index, size: 40)], sync: false)
            }
            let all = try segmentNames(in: directory)
            #expect(all.count >= 8)
            #expect(wal.heldSegmentNames == all)
            // Nothing is released yet: purge stops at the oldest file, which is held.
            #expect(try wal.purgeSegments(maxWALs: 1) == [])

            try wal.saveSnapshot(WALSnapshotMarker(index: 200, term: 1))
            wal.releaseSegments(before: 200)
            let held = wal.heldSegmentNames
            let firstHeld = try #require(held.first.flatMap(SegmentName.init(fileName:)))
            // The segment holding index 200 stays held; the one after it starts past 200.
            #expect(firstHeld.firstIndex <= 200)
            #expect(try #require(held.dropFirst().first.flatMap(SegmentName.init(fileName:))).firstIndex >= 200)
            #expect(held == Array(all.suffix(held.count)))

            // maxWALs larger than what is on disk removes nothing.
            #expect(try wal.purgeSegments(maxWALs: all.count) == [])
            let removed = try wal.purgeSegments(maxWALs: 2)
            #expect(removed == Array(all.prefix(all.count - held.count)))
            #expect(try segmentNames(in: directory) == held)
            try wal.close()

            let (reopened, contents) = try WAL.open(
                directory: directory,
                at: WALSnapshotMarker(index: 200, term: 1),
                options: smallSegments
            )
            #expect(contents.entries.map(\.index) == Array(201...300))
            try reopened.close()
            // The entries before the snapshot are gone with their segments.
            #expect(throws: WALError.self) { _ = try WAL.open(directory: directory, at: .zero, options: smallSegments) }
        }
    }

    @Test("purge keeps maxWALs files even when more are released")
    func purgeKeepsMaxWALs() throws {
        try withTemporaryDirectory { directory in
            let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
            for index in 1...300 as ClosedRange<UInt64> {
                try wal.save(hardState: HardState(term: 1, commit: index - 1), entries: [entry(index, size: 40)], sync: false)
            }
            try wal.saveSnapshot(WALSnapshotMarker(index: 300, term: 1))
            wal.releaseSegments(before: 300)
            let all = try segmentNames(in: directory)
            // The tail, and the segment before it if the tail starts exactly after 300.
            #expect(wal.heldSegmentNames.count <= 2)
            let removed = try wal.purgeSegments(maxWALs: 5)
            #expect(removed == Array(all.prefix(all.count - 5)))
            #expect(try segmentNames(in: directory) == Array(all.suffix(5)))
            // maxWALs 0 keeps everything, as etcd's --max-wals=0.
            #expect(try wal.purgeSegments(maxWALs: 0) == [])
            try wal.close()
        }
    }
}
