"""The customer session state machine.

queued -> offered -> connected -> wrap_up -> completed, with abandoned (left
while waiting), failed and interrupted (server or media lost mid-call).
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    WRAP_UP = "wrap_up"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


S = SessionState

TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.QUEUED: frozenset({S.OFFERED, S.ABANDONED, S.FAILED}),
    # an offer that is declined, times out or is revoked puts the session back in the queue
    S.OFFERED: frozenset({S.QUEUED, S.CONNECTED, S.ABANDONED, S.FAILED}),
    S.CONNECTED: frozenset({S.WRAP_UP, S.INTERRUPTED, S.FAILED}),
    S.WRAP_UP: frozenset({S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.ABANDONED: frozenset(),
    S.FAILED: frozenset(),
    S.INTERRUPTED: frozenset({S.WRAP_UP}),
}

WAITING = frozenset({S.QUEUED, S.OFFERED})
LIVE = frozenset({S.QUEUED, S.OFFERED, S.CONNECTED, S.WRAP_UP})
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class IllegalTransition(Exception):
    def __init__(self, current: SessionState, target: SessionState) -> None:
        super().__init__(f"a session cannot go from {current} to {target}")
        self.current = current
        self.target = target


def transition(current: str, target: str) -> SessionState:
    """Check one step and return the new state; raise IllegalTransition otherwise."""
    cur, tgt = SessionState(current), SessionState(target)
    if tgt not in TRANSITIONS[cur]:
        raise IllegalTransition(cur, tgt)
    return tgt
