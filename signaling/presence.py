"""The presence port: who is connected, or owed a resume window, as data that outlives the process.

The registry (signaling.registry) keeps the live sockets of this process; what a
restart must not lose is written through this port before the client is told:
each party's resume token, only as its SHA-256, and its grace deadline. After a
restart the registry reads every record back: a party that was connected gets a
fresh resume window, one already in its window keeps its deadline, and one
whose deadline passed is gone.

Implementations (vbranch.presence): the database (the one-box default) and
Redis (several nodes). One contract test runs against both
(tests/protocol/test_presence_store.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


def token_hash(resume_token: str) -> str:
    return hashlib.sha256(resume_token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Presence:
    party: str  # "customer:<session id>" or "staff:<account id>"
    token_hash: str  # SHA-256 of the party's current resume token (hex)
    connected: bool
    grace_until: float | None = None  # wall clock; set while not connected: gone after it


class PresenceStore(Protocol):
    async def put(self, record: Presence) -> None:
        """Write a party's record; it is durable when this returns."""

    async def remove(self, party: str) -> None: ...

    async def all(self) -> list[Presence]: ...

    async def close(self) -> None: ...
