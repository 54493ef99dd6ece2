"""A presence store in a dict, for unit tests with fake adapters (it passes the same contract suite)."""

from __future__ import annotations

from signaling.presence import Presence


class MemoryPresence:
    def __init__(self) -> None:
        self.records: dict[str, Presence] = {}

    async def put(self, record: Presence) -> None:
        self.records[record.party] = record

    async def remove(self, party: str) -> None:
        self.records.pop(party, None)

    async def all(self) -> list[Presence]:
        return list(self.records.values())

    async def close(self) -> None:
        pass
