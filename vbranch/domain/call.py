"""A call, from the moment an agent has the customer to its end: who may do what (pure, no I/O).

A ``Call`` exists while its session is ``connected``. It holds what the rules
need — its agent, its service's checklist, the steps marked, whether a face
check passed — and answers each request with an event (a value) or a domain
error. Nothing here touches the database, the sockets or the media; the call
service (vbranch.calls.service) carries the events out.

Rules:

- Only the call's own agent marks steps and ends the call; anyone else gets
  ``Forbidden("not_your_session")``. Once ended, every request gets
  ``Conflict("invalid_state")``.
- ``mark``: the step must be on the service's checklist (``unknown_step``);
  a ``facecheck`` step is done only by a face check that matched and passed
  liveness (``step_automatic``). Marking twice is allowed (a note may change);
  the step stays done.
- ``end`` by the agent: every mandatory step done (``checklist_incomplete``,
  details name each missing step), and, where the service says
  ``require_complete_recordings``, no recording issue
  (``evidence_incomplete``, details name party and problem). The call goes to
  ``wrap_up`` with reason ``completed``.
- ``override_end`` by a supervisor: needs a reason (``missing_field``); it ends
  the call whatever is missing, and the event keeps what was missing so the
  audit log can say so. Reason ``ended_by_supervisor``.
- ``customer_left``: the customer hung up — ``wrap_up``, reason
  ``customer_left``. ``party_lost``: a party did not come back within the
  resume window — ``interrupted`` with the reason given.

Recording issues are computed by the media side (vbranch.domain.media_coverage)
and passed in as data, so the rules stay pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vbranch.domain.checklist import Checklist
from vbranch.domain.errors import Conflict, Forbidden, Invalid
from vbranch.domain.session_state import SessionState


@dataclass(frozen=True)
class StepMarked:
    session_id: str
    step: str
    note: str | None
    checklist: list[dict[str, Any]]  # every step with whether it is done, after this mark


@dataclass(frozen=True)
class CallEnded:
    session_id: str
    agent_id: int
    target: SessionState  # wrap_up or interrupted
    reason: str  # completed, ended_by_supervisor, customer_left, customer_disconnected, ...
    disposition: str | None = None
    notes: str | None = None
    override_reason: str | None = None
    missing_steps: tuple[str, ...] = ()  # what an override ended without
    recording_issues: tuple[dict[str, Any], ...] = ()


@dataclass
class Call:
    session_id: str
    agent_id: int
    service_code: str
    checklist: Checklist
    connected_at: float
    marked: set[str] = field(default_factory=set)
    facecheck_passed: bool = False
    ended: CallEnded | None = None

    # -- queries -------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return self.checklist.status(self.marked, self.facecheck_passed)

    def missing(self) -> list[str]:
        return self.checklist.missing(self.marked, self.facecheck_passed)

    def check_agent(self, agent_id: int) -> None:
        """The agent handles this live call, or a domain error."""
        if agent_id != self.agent_id:
            raise Forbidden("not_your_session", "you are not handling this session")
        self._check_live()

    # -- requests ------------------------------------------------------------
    def mark(self, agent_id: int, step: str, note: str | None = None) -> StepMarked:
        self.check_agent(agent_id)
        found = self.checklist.step(step)
        if found is None:
            raise Invalid("unknown_step", f"{self.service_code} has no checklist step {step!r}")
        if found.kind == "facecheck":
            raise Invalid("step_automatic", f"{step!r} is done by a passing face check")
        self.marked.add(step)
        return StepMarked(self.session_id, step, note, self.status())

    def face_check_finished(self, passed: bool) -> None:
        """A face check's outcome; one pass is enough for the rest of the call."""
        self.facecheck_passed = self.facecheck_passed or passed

    def end(self, agent_id: int, disposition: str | None, notes: str | None,
            recording_issues: Sequence[dict[str, Any]] = ()) -> CallEnded:
        self.check_agent(agent_id)
        missing = self.missing()
        if missing:
            raise Conflict("checklist_incomplete",
                           f"mandatory checklist steps not done: {', '.join(missing)}; finish them or ask "
                           "a supervisor to end the call with a reason",
                           [{"field": "checklist", "problem": code, "kind": "missing_step"} for code in missing])
        if self.checklist.require_complete_recordings and recording_issues:
            raise Conflict("evidence_incomplete",
                           "this service needs both parties recorded for the whole call, and the recordings are "
                           "not complete; reconnect the missing party or ask a supervisor to end the call with "
                           "a reason",
                           [{"field": "recordings", "problem": i["reason"], "party": i["party"]}
                            for i in recording_issues])
        return self._end(SessionState.WRAP_UP, "completed", disposition=disposition, notes=notes,
                         recording_issues=tuple(recording_issues))

    def override_end(self, reason: str | None, disposition: str | None, notes: str | None,
                     recording_issues: Sequence[dict[str, Any]] = ()) -> CallEnded:
        if not reason:
            raise Invalid("missing_field", "a supervisor ending a call must give override_reason")
        self._check_live()
        return self._end(SessionState.WRAP_UP, "ended_by_supervisor", disposition=disposition, notes=notes,
                         override_reason=reason, missing_steps=tuple(self.missing()),
                         recording_issues=tuple(recording_issues))

    def customer_left(self) -> CallEnded:
        self._check_live()
        return self._end(SessionState.WRAP_UP, "customer_left")

    def party_lost(self, reason: str) -> CallEnded:
        self._check_live()
        return self._end(SessionState.INTERRUPTED, reason)

    # -- internals -----------------------------------------------------------
    def _check_live(self) -> None:
        if self.ended is not None:
            raise Conflict("invalid_state", f"the call has ended ({self.ended.reason})")

    def _end(self, target: SessionState, reason: str, **details: Any) -> CallEnded:
        self.ended = CallEnded(self.session_id, self.agent_id, target, reason, **details)
        return self.ended
