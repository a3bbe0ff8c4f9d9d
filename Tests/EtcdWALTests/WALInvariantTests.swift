import EtcdRaft
import EtcdWAL
import Testing

/// Writes Raft never asks for trap instead of reaching the disk (the write-side half of the
/// paired continuity checks; replay checks the same again).
@Suite struct WALInvariantTests {
    @Test("saving an entry that leaves a gap after the last index traps")
    func gapTraps() async {
        await #expect(processExitsWith: .failure) {
            let fileSystem = MemoryFileSystem()
            let wal = try WAL.create(directory: "/wal", metadata: [], fileSystem: fileSystem, options: WALOptions(segmentSizeBytes: 4096))
            try wal.save(hardState: nil, entries: [Entry(term: 1, index: 1)], sync: true)
            try wal.save(hardState: nil, entries: [Entry(term: 1, index: 3)], sync: true)
        }
    }

    @Test("saving an entry over a committed index traps")
    func committedOverwriteTraps() async {
        await #expect(processExitsWith: .failure) {
            let fileSystem = MemoryFileSystem()
            let wal = try WAL.create(directory: "/wal", metadata: [], fileSystem: fileSystem, options: WALOptions(segmentSizeBytes: 4096))
            try wal.save(
                hardState: HardState(term: 1, commit: 2),
                entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 2)],
                sync: true
            )
            try wal.save(hardState: nil, entries: [Entry(term: 2, index: 2)], sync: true)
        }
    }

    @Test("entries out of order within one save trap")
    func unorderedTraps() async {
        await #expect(processExitsWith: .failure) {
            let fileSystem = MemoryFileSystem()
            let wal = try WAL.create(directory: "/wal", metadata: [], fileSystem: fileSystem, options: WALOptions(segmentSizeBytes: 4096))
            try wal.save(hardState: nil, entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 3)], sync: true)
        }
    }

    @Test("the same saves without the fault succeed (control for the traps above)")
    func control() throws {
        let fileSystem = MemoryFileSystem()
        let wal = try WAL.create(directory: "/wal", metadata: [], fileSystem: fileSystem, options: WALOptions(segmentSizeBytes: 4096))
        try wal.save(
            hardState: HardState(term: 1, commit: 1),
            entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 2)],
            sync: true
        )
        try wal.save(hardState: nil, entries: [Entry(term: 2, index: 2), Entry(term: 2, index: 3)], sync: true)
        #expect(wal.lastIndex == 3)
    }
}
