import EtcdRaft
@testable import EtcdWAL
import Testing

@Suite struct SnapshotterTests {
    static func snapshot(index: UInt64, term: UInt64) -> Snapshot {
        Snapshot(
            metadata: SnapshotMetadata(
                index: index,
                term: term,
                confState: ConfState(voters: [NodeID(3), NodeID(1)], learners: [NodeID(7)])
            ),
            data: (0..<(100 + Int(index))).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(index)) }
        )
    }

    @Test("a saved snapshot loads back with its metadata, membership and data")
    func roundTrip() throws {
        try withTemporaryDirectory { directory in
            let snapshotter = Snapshotter(directory: directory + "/member/snap")
            #expect(throws: WALError.noSnapshot(directory: directory + "/member/snap")) { _ = try snapshotter.loadNewest() }
            try snapshotter.save(Self.snapshot(index: 10, term: 2))
            try snapshotter.save(Snapshot())  // empty: not written
            #expect(try snapshotter.snapshotNames() == ["0000000000000002-000000000000000a.snap"])
            #expect(try snapshotter.loadNewest() == Self.snapshot(index: 10, term: 2))
            #expect(try segmentFiles(directory + "/member/snap").allSatisfy { !$0.hasSuffix(".tmp") })
        }
    }

    @Test("the newest snapshot wins; a corrupt newest one is renamed .broken and the next is loaded")
    func corruptNewest() throws {
        try withTemporaryDirectory { directory in
            let snapshotter = Snapshotter(directory: directory)
            try snapshotter.save(Self.snapshot(index: 10, term: 2))
            try snapshotter.save(Self.snapshot(index: 20, term: 2))
            try snapshotter.save(Self.snapshot(index: 30, term: 3))
            #expect(try snapshotter.loadNewest() == Self.snapshot(index: 30, term: 3))

            let newest = directory + "/0000000000000003-000000000000001e.snap"
            var bytes = try readFile(newest)
            bytes[bytes.count - 5] ^= 0x10
            try writeFile(newest, bytes)
            #expect(throws: WALError.corruptSnapshot(path: newest, reason: "CRC mismatch")) {
                _ = try snapshotter.load(path: newest)
            }
            #expect(try snapshotter.loadNewest() == Self.snapshot(index: 20, term: 2))
            #expect(try segmentFiles(directory).contains("0000000000000003-000000000000001e.snap.broken"))
            #expect(try snapshotter.snapshotNames().count == 2)
        }
    }

    @Test("loadNewest(matching:) takes the newest snapshot the WAL has a marker for")
    func matchingMarkers() throws {
        try withTemporaryDirectory { directory in
            let snapshotter = Snapshotter(directory: directory)
            try snapshotter.save(Self.snapshot(index: 10, term: 2))
            try snapshotter.save(Self.snapshot(index: 20, term: 2))
            let markers = [WALSnapshotMarker.zero, WALSnapshotMarker(index: 10, term: 2)]
            #expect(try snapshotter.loadNewest(matching: markers) == Self.snapshot(index: 10, term: 2))
            #expect(throws: WALError.noSnapshot(directory: directory)) { _ = try snapshotter.loadNewest(matching: []) }
            // A file whose name disagrees with its contents is damage too.
            try writeFile(directory + "/0000000000000009-0000000000000063.snap", try readFile(directory + "/0000000000000002-0000000000000014.snap"))
            #expect(try snapshotter.loadNewest() == Self.snapshot(index: 20, term: 2))
            #expect(try segmentFiles(directory).contains("0000000000000009-0000000000000063.snap.broken"))
        }
    }

    @Test("purge keeps the newest maxSnapshots files")
    func purge() throws {
        try withTemporaryDirectory { directory in
            let snapshotter = Snapshotter(directory: directory)
            for index in 1...8 as ClosedRange<UInt64> { try snapshotter.save(Self.snapshot(index: index * 10, term: 1)) }
            let removed = try snapshotter.purge(maxSnapshots: 5)
            #expect(removed == (1...3).reversed().map { Snapshotter.fileName(for: SnapshotMetadata(index: $0 * 10, term: 1)) })
            #expect(try snapshotter.snapshotNames().count == 5)
            #expect(try snapshotter.loadNewest().metadata.index == 80)
            #expect(try snapshotter.purge(maxSnapshots: 5) == [])
        }
    }

    @Test("a truncated snapshot file is reported, not trusted")
    func truncatedFile() throws {
        let encoded = SnapshotFile.encode(Self.snapshot(index: 5, term: 1))
        for length in [0, 7, 12, 40, encoded.count - 1] {
            #expect(throws: WALError.self) { _ = try SnapshotFile.decode(Array(encoded.prefix(length)), path: "x.snap") }
        }
        #expect(try SnapshotFile.decode(encoded, path: "x.snap") == Self.snapshot(index: 5, term: 1))
    }
}

func segmentFiles(_ directory: String) throws -> [String] {
    try POSIXFileSystem().fileNames(in: directory)
}
