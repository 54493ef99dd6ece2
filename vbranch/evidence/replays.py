"""Which media tokens have had their replay audited.

A player asks for a recording in many ranges (the start, then a range per seek,
or any range it likes): each media token's replay is audited once, on its first
request whatever the range, and every request with the token (the first and any
that arrive while its audit is being written) waits for that audit, so no range
serves a byte unaudited and seeks add no noise. A failed audit fails those
requests and is tried again by the next one. A token is remembered for as long
as it can be valid; after a restart a token still in use is audited once more
(at least once, never none).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from vbranch.clock import Clock


class ReplayLedger:
    def __init__(self, clock: Clock, token_ttl_s: float) -> None:
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        # token digest -> (when it was first used, its audit); in order of first use
        self._audits: dict[str, tuple[float, asyncio.Future[None]]] = {}

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def audited(self, token: str, audit: Callable[[str], Awaitable[None]]) -> None:
        """Return once the token's replay is audited: ``audit(digest)`` runs on its first use only."""
        now = self.clock.now()
        self._prune(now)
        digest = self.digest(token)
        entry = self._audits.get(digest)
        if entry is None:
            done = asyncio.ensure_future(audit(digest))
            entry = self._audits[digest] = (now, done)
            done.add_done_callback(lambda f: self._forget_failed(digest, f))
        await asyncio.shield(entry[1])

    def _forget_failed(self, digest: str, done: asyncio.Future[None]) -> None:
        failed = done.cancelled() or done.exception() is not None
        if failed and self._audits.get(digest, (0.0, None))[1] is done:  # the next request audits instead
            del self._audits[digest]

    def _prune(self, now: float) -> None:
        # a token first used more than its lifetime ago has expired (it was issued before that use);
        # the dict is in order of first use, so the stale ones are at its front
        while self._audits:
            digest, (at, _) = next(iter(self._audits.items()))
            if now - at <= self.token_ttl_s:
                break
            del self._audits[digest]
