"""Which media tokens have had their replay audited.

A player asks for a recording in many ranges (the start, then a range per seek,
or any range it likes): each media token's replay is audited once, on its first
request whatever the range, so no range serves a byte unaudited and seeks add
no noise. A token is remembered for as long as it can be valid; after a restart
a token still in use is audited once more (at least once, never none).
"""

from __future__ import annotations

import hashlib

from vbranch.clock import Clock


class ReplayLedger:
    def __init__(self, clock: Clock, token_ttl_s: float) -> None:
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self._first_use: dict[str, float] = {}  # token digest -> when its replay was audited

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def claim(self, token: str) -> str | None:
        """The token's digest if this is its first use (the caller audits it), else None."""
        now = self.clock.now()
        self._prune(now)
        digest = self.digest(token)
        if digest in self._first_use:
            return None
        self._first_use[digest] = now
        return digest

    def release(self, digest: str) -> None:
        """The audit of a claimed first use failed: the next request audits instead."""
        self._first_use.pop(digest, None)

    def _prune(self, now: float) -> None:
        # a token first used more than its lifetime ago has expired (it was issued before that use);
        # the dict is in order of first use, so the stale ones are at its front
        while self._first_use:
            digest, at = next(iter(self._first_use.items()))
            if now - at <= self.token_ttl_s:
                break
            del self._first_use[digest]
