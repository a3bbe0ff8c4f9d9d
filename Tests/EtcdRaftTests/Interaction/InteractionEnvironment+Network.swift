@testable import EtcdRaft

/// Commands that run the Ready cycle and move messages between nodes.
extension InteractionEnvironment {
    /// `process-ready ID...`: one Ready cycle per node, following the contract in `Ready`:
    /// persist the snapshot, hard state and entries to the node's MemoryStorage, put the
    /// messages on the network, apply committed configuration changes, then advance.
    func processReady(_ command: InteractionCommand) throws(CommandError) {
        for id in try nodeIDs(command, allIfEmpty: true) {
            try handleReady(of: id)
        }
    }

    /// Handles one Ready of node `id`; returns false (printing nothing) when there was none.
    @discardableResult
    func handleReady(of id: NodeID, quietWhenEmpty: Bool = false) throws(CommandError) -> Bool {
        let position = Int(id.rawValue) - 1
        var member = members[position]
        guard member.node.hasReady() else {
            if !quietWhenEmpty { write("> \(id) handling Ready"); write("  <empty Ready>") }
            return false
        }
        let ready = member.node.ready()
        write("> \(id) handling Ready")
        for line in InteractionFormat.describe(ready) { write("  " + line) }

        do {
            if let snapshot = ready.snapshot {
                try member.storage.applySnapshot(snapshot)
                member.confStates = [(snapshot.metadata.index, snapshot.metadata.confState)]
            }
        } catch {
            throw CommandError("\(id): persisting snapshot: \(error)")
        }
        if let hardState = ready.hardState { member.storage.setHardState(hardState) }
        member.storage.append(ready.entries)
        network.append(contentsOf: ready.messages)
        for entry in ready.committedEntries where entry.type == .confChange {
            guard let change = ConfChange(encoded: entry.data) else {
                throw CommandError("\(id): undecodable configuration change at index \(entry.index)")
            }
            let confState = member.node.applyConfChange(change)
            member.confStates.append((entry.index, confState))
        }
        member.node.advance(ready)
        members[position] = member
        return true
    }

    /// `deliver-msgs [drop=(ID,...)] [type=MsgApp] ID...`: steps every queued message addressed
    /// to the given nodes (of the given type only, if one is named) into them, in the order
    /// sent. Messages to the nodes in `drop` are removed from the network instead.
    func deliverMessages(_ command: InteractionCommand) throws(CommandError) {
        var typeFilter: MessageType?
        if let typeName = command.value("type") {
            typeFilter = try InteractionFormat.messageType(named: typeName).orCommandError("deliver-msgs: unknown type \(typeName)")
        }
        for text in command.values("drop") ?? [] {
            let id = try nodeID(text)
            let (dropped, kept) = partitionNetwork { $0.to == id && (typeFilter == nil || $0.type == typeFilter) }
            network = kept
            for message in dropped { write("dropped: " + InteractionFormat.describe(message)) }
        }
        for id in try nodeIDs(command) {
            try deliver(to: id, type: typeFilter)
        }
    }

    /// Delivers the queued messages for `id`; returns how many were taken off the network.
    @discardableResult
    func deliver(to id: NodeID, type: MessageType? = nil) throws(CommandError) -> Int {
        let (taken, kept) = partitionNetwork { $0.to == id && (type == nil || $0.type == type) }
        network = kept
        guard !taken.isEmpty else { return 0 }
        write("> \(id) receiving messages")
        for message in taken {
            let description = InteractionFormat.describe(message)
            if isolated.contains(message.from) || isolated.contains(message.to) {
                write("  dropped (isolated): " + description)
                continue
            }
            write("  " + description)
            try withNode(id) { node in
                do {
                    try node.step(message)
                } catch {
                    write("  raft: \(error)")
                }
            }
        }
        return taken.count
    }

    private func partitionNetwork(_ isSelected: (Message) -> Bool) -> (selected: [Message], rest: [Message]) {
        var selected: [Message] = []
        var rest: [Message] = []
        for message in network {
            if isSelected(message) { selected.append(message) } else { rest.append(message) }
        }
        return (selected, rest)
    }

    /// `stabilize [ID...]`: handles Readies and delivers messages among the given nodes (all by
    /// default) until none of them has anything left to do.
    func stabilize(_ command: InteractionCommand) throws(CommandError) {
        let ids = try nodeIDs(command, allIfEmpty: true)
        // A healthy group goes quiet within a few rounds; a hundred means something loops.
        for _ in 0..<100 {
            var done = true
            for id in ids where try handleReady(of: id, quietWhenEmpty: true) { done = false }
            for id in ids where try deliver(to: id) > 0 { done = false }
            if done { return }
        }
        throw CommandError("stabilize: still busy after 100 rounds")
    }

    /// `isolate ID...`: cuts the nodes off; messages to or from them are dropped on delivery.
    func isolate(_ command: InteractionCommand) throws(CommandError) {
        for id in try nodeIDs(command) { isolated.insert(id) }
    }

    /// `heal`: reconnects every isolated node.
    func heal() { isolated.removeAll() }
}
