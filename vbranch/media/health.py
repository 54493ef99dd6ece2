"""Each party's media over a call, as evidence: when it flowed, and why it did not (pure).

A party's media is in one of these states; the hub moves it and puts every
move on the timeline (``media.party_*`` events), with wall-clock times from the
injected clock:

``waiting``     no offer yet
``connecting``  offer answered, ICE/DTLS not connected yet
``connected``   connected and frames arriving (an interval of coverage is open)
``stalled``     connected, but no frame for ``stall_after_s`` (coverage paused)
``lost``        the peer connection closed or failed (coverage closed)

``not_connected`` is not a state but a flag: the party has not connected within
``connect_timeout_s`` of the call's start (or of its last offer), which the
agent and customer are told about as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATES = ("waiting", "connecting", "connected", "stalled", "lost")


@dataclass
class PartyHealth:
    party: str
    state: str = "waiting"
    since: float | None = None
    ever_connected: bool = False
    not_connected_flagged: bool = False
    # [start, end] wall clock while media flowed; end None while it still does
    intervals: list[list[float | None]] = field(default_factory=list)

    def move(self, state: str, at: float) -> str | None:
        """Go to ``state`` at ``at``; the previous state, or None if nothing changed."""
        if state not in STATES:
            raise ValueError(f"unknown media state {state!r}")
        if state == self.state:
            return None
        previous, self.state, self.since = self.state, state, at
        if state == "connected":
            self.ever_connected = True
            self.not_connected_flagged = False
            self.intervals.append([at, None])
        elif previous == "connected" and self.intervals and self.intervals[-1][1] is None:
            self.intervals[-1][1] = max(at, self.intervals[-1][0] or at)
        return previous

    def snapshot(self) -> dict[str, Any]:
        return {"party": self.party, "state": self.state, "since": self.since,
                "ever_connected": self.ever_connected, "intervals": [list(i) for i in self.intervals]}
