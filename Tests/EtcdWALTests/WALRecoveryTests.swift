import EtcdRaft
@testable import EtcdWAL
import Testing

@Suite struct WALRecoveryTests {
    static let firstSegment = "0000000000000000-0000000000000000.wal"
    /// One segment big enough for everything these tests write.
    static let oneSegment = WALOptions(segmentSizeBytes: 64 * 1024)

    /// Entries 1...5, one save each, then entry 6 alone: returns where entry 6's frame starts
    /// and ends in the first segment.
    static func writeSixEntries(_ directory: String) throws -> (lastStart: Int, lastEnd: Int) {
        let wal = try WAL.create(directory: directory, metadata: testMetadata, options: oneSegment)
        for index in 1...5 as ClosedRange<UInt64> {
            try wal.save(hardState: HardState(term: 1, commit: index - 1), entries: [entry(index)], sync: false)
        }
        let lastStart = wal.tailOffset
        try wal.save(hardState: nil, entries: [entry(6, size: 30)], sync: true)
        let lastEnd = wal.tailOffset
        try wal.close()
        return (lastStart, lastEnd)
    }

    static func expectFiveEntriesRecovered(_ directory: String, tailOffset: Int) throws {
        let (wal, contents) = try WAL.open(directory: directory, at: .zero, options: oneSegment)
        #expect(contents.entries == (1...5).map { entry($0) })
        #expect(contents.hardState == HardState(term: 1, commit: 4))
        #expect(wal.tailOffset == tailOffset)
        // The repaired log takes appends, and they survive a reopen.
        try wal.save(hardState: HardState(term: 2, commit: 5), entries: [entry(6, term: 2, size: 3)], sync: true)
        try wal.close()
        let (again, reread) = try WAL.open(directory: directory, at: .zero, options: oneSegment)
        #expect(reread.entries == (1...5).map { entry($0) } + [entry(6, term: 2, size: 3)])
        #expect(reread.hardState == HardState(term: 2, commit: 5))
        try again.close()
    }

    @Test("a last record cut at every byte offset (file truncated or zero-filled) loses only that record")
    func truncationAtEveryOffset() throws {
        try withTemporaryDirectory { directory in
            let (lastStart, lastEnd) = try Self.writeSixEntries(directory)
            let path = directory + "/" + Self.firstSegment
            let original = try readFile(path)
            #expect(lastEnd - lastStart == 64)
            for cut in lastStart..<lastEnd {
                for zeroFilled in [false, true] {
                    var bytes = Array(original[..<cut])
                    if zeroFilled { bytes += [UInt8](repeating: 0, count: original.count - cut) }
                    try writeFile(path, bytes)
                    try Self.expectFiveEntriesRecovered(directory, tailOffset: lastStart)
                }
            }
            // Control: the untouched file keeps entry 6.
            try writeFile(path, original)
            let (wal, contents) = try WAL.open(directory: directory, at: .zero, options: Self.oneSegment)
            #expect(contents.entries.last == entry(6, size: 30))
            try wal.close()
        }
    }

    @Test("a garbage tail after the last record is truncated and zeroed; appends continue")
    func garbageTail() throws {
        try withTemporaryDirectory { directory in
            let (_, lastEnd) = try Self.writeSixEntries(directory)
            let path = directory + "/" + Self.firstSegment
            var bytes = try readFile(path)
            var state: UInt32 = 12345
            for offset in lastEnd..<(lastEnd + 700) {
                state = state &* 1_103_515_245 &+ 12345
                bytes[offset] = UInt8(truncatingIfNeeded: state >> 16) | 1
            }
            try writeFile(path, bytes)
            let (wal, contents) = try WAL.open(directory: directory, at: .zero, options: Self.oneSegment)
            #expect(contents.entries.map(\.index) == Array(1...6))
            #expect(wal.tailOffset == lastEnd)
            #expect(try readFile(path)[lastEnd...].allSatisfy { $0 == 0 })
            try wal.save(hardState: nil, entries: [entry(7)], sync: true)
            try wal.close()
            let (again, reread) = try WAL.open(directory: directory, at: .zero, options: Self.oneSegment)
            #expect(reread.entries.map(\.index) == Array(1...7))
            try again.close()
        }
    }

    @Test("a zeroed last record is dropped, the records before it kept")
    func zeroedTail() throws {
        try withTemporaryDirectory { directory in
            let (lastStart, lastEnd) = try Self.writeSixEntries(directory)
            let path = directory + "/" + Self.firstSegment
            var bytes = try readFile(path)
            bytes.replaceSubrange(lastStart..<lastEnd, with: [UInt8](repeating: 0, count: lastEnd - lastStart))
            try writeFile(path, bytes)
            try Self.expectFiveEntriesRecovered(directory, tailOffset: lastStart)
        }
    }

    /// The frame of entry `index` in the first segment.
    static func frame(ofEntry index: UInt64, in bytes: [UInt8]) throws -> RecordFrame.Decoded {
        try #require(SegmentScan(bytes).frames.first { $0.record == .entry(entry(index)) })
    }

    @Test("a flipped byte in an earlier record fails loudly, naming the file and offset")
    func flippedByte() throws {
        try withTemporaryDirectory { directory in
            _ = try Self.writeSixEntries(directory)
            let path = directory + "/" + Self.firstSegment
            let original = try readFile(path)
            let target = try Self.frame(ofEntry: 3, in: original)
            // A data byte, then a length byte: neither may be mistaken for a torn tail.
            for position in [target.offset + RecordFrame.headerBytes + 12, target.offset] {
                var bytes = original
                bytes[position] ^= 0x40
                try writeFile(path, bytes)
                let error = #expect(throws: WALError.self) {
                    _ = try WAL.open(directory: directory, at: .zero, options: Self.oneSegment)
                }
                guard case .corruptRecord(let errorPath, let offset, _) = error else {
                    Issue.record("expected a corrupt record, got \(String(describing: error))")
                    continue
                }
                #expect(errorPath == path)
                #expect(offset == target.offset)
                #expect(error?.description.contains("\(path) at offset \(target.offset)") == true)
                // Nothing was repaired: the damaged bytes are still there for an operator.
                #expect(try readFile(path) == bytes)
            }
        }
    }

    /// Writes 1...150 one entry per save into 4 KB segments.
    static func writeSegments(_ directory: String) throws -> [String] {
        let wal = try WAL.create(directory: directory, metadata: testMetadata, options: smallSegments)
        for index in 1...150 as ClosedRange<UInt64> {
            try wal.save(hardState: HardState(term: 1, commit: index - 1), entries: [entry(index, size: 40)], sync: false)
        }
        try wal.close()
        let names = try segmentNames(in: directory)
        #expect(names.count >= 4)
        return names
    }

    @Test("a damaged end of a segment that is not the last is corruption, not a torn tail")
    func damagedEarlierSegment() throws {
        try withTemporaryDirectory { directory in
            let names = try Self.writeSegments(directory)
            let path = directory + "/" + names[1]
            var bytes = try readFile(path)
            let last = try #require(SegmentScan(bytes).frames.last)
            bytes[last.offset + RecordFrame.headerBytes + 3] ^= 1
            try writeFile(path, bytes)
            #expect(throws: WALError.corruptRecord(path: path, offset: last.offset, reason: "data CRC mismatch")) {
                _ = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            }
        }
    }

    @Test("a missing segment in the middle of the sequence fails")
    func missingSegment() throws {
        try withTemporaryDirectory { directory in
            let names = try Self.writeSegments(directory)
            try removeFile(directory + "/" + names[1])
            #expect(throws: WALError.missingSegment(directory: directory, expectedSequence: 1, found: names[2])) {
                _ = try WAL.open(directory: directory, at: .zero, options: smallSegments)
            }
        }
    }

    @Test("a segment whose CRC record does not continue the previous segment's chain fails")
    func chainBreakAtBoundary() throws {
        try withTemporaryDirectory { directory in
            let names = try Self.writeSegments(directory)
            let path = directory + "/" + names[2]
            var bytes = try readFile(path)
            let first = try #require(SegmentScan(bytes).frames.first)
            // A self-consistent CRC record carrying the wrong chain value.
            var replacement: [UInt8] = []
            _ = RecordFrame.append(.crc(first.previousCRC ^ 1), previousCRC: first.previousCRC ^ 1, to: &replacement)
            #expect(replacement.count == first.end)
            bytes.replaceSubrange(0..<first.end, with: replacement)
            try writeFile(path, bytes)
            let expected = WALError.crcChainBreak(path: path, offset: 0, expected: first.previousCRC, found: first.previousCRC ^ 1)
            #expect(throws: expected) { _ = try WAL.open(directory: directory, at: .zero, options: smallSegments) }
        }
    }

    @Test("a half-created segment left by a crash during rotation is removed on open")
    func leftoverTemporarySegment() throws {
        try withTemporaryDirectory { directory in
            _ = try Self.writeSixEntries(directory)
            let temporary = directory + "/0000000000000001-0000000000000007.wal.tmp"
            try writeFile(temporary, [1, 2, 3])
            let (wal, contents) = try WAL.open(directory: directory, at: .zero, options: Self.oneSegment)
            #expect(contents.entries.count == 6)
            #expect(!POSIXFileSystem().fileExists(temporary))
            try wal.close()
        }
    }
}

func removeFile(_ path: String) throws {
    try POSIXFileSystem().removeFile(path)
}
