"""The call state machine (vbranch.domain.call): every rule, as values and domain errors."""

from __future__ import annotations

import pytest

from vbranch.domain.call import Call
from vbranch.domain.checklist import Checklist
from vbranch.domain.errors import Conflict, Forbidden, Invalid
from vbranch.domain.session_state import SessionState

STEPS = Checklist.model_validate({"steps": [
    {"code": "identity", "name_zh": "身份核验", "name_en": "Identity", "kind": "facecheck"},
    {"code": "disclosure", "name_zh": "风险揭示", "name_en": "Risk disclosure"},
    {"code": "survey", "name_zh": "问卷", "name_en": "Survey", "mandatory": False},
]})
ISSUE = {"party": "customer", "reason": "recording_missing"}


def call(checklist: Checklist = STEPS, **kw) -> Call:
    return Call(session_id="s1", agent_id=7, service_code="risk", checklist=checklist, connected_at=100.0, **kw)


def test_marking_a_step_reports_the_whole_checklist():
    c = call()
    ev = c.mark(7, "disclosure", "read aloud")
    assert (ev.session_id, ev.step, ev.note) == ("s1", "disclosure", "read aloud")
    assert {s["code"]: s["done"] for s in ev.checklist} == {"identity": False, "disclosure": True, "survey": False}
    assert c.mark(7, "disclosure").checklist == ev.checklist  # marking again keeps it done


@pytest.mark.parametrize("step, code", [("nope", "unknown_step"), ("identity", "step_automatic")])
def test_steps_that_cannot_be_marked(step, code):
    c = call()
    with pytest.raises(Invalid) as err:
        c.mark(7, step)
    assert err.value.code == code
    assert c.marked == set()


def test_another_agent_may_not_touch_the_call():
    c = call()
    for attempt in (lambda: c.mark(8, "disclosure"), lambda: c.end(8, "done", None)):
        with pytest.raises(Forbidden) as err:
            attempt()
        assert err.value.code == "not_your_session"
    assert c.ended is None


def test_end_needs_every_mandatory_step_and_names_the_missing_ones():
    c = call()
    with pytest.raises(Conflict) as err:
        c.end(7, "done", None)
    assert err.value.code == "checklist_incomplete"
    assert [d["problem"] for d in err.value.details] == ["identity", "disclosure"]  # checklist order
    c.mark(7, "disclosure")
    c.face_check_finished(passed=False)
    with pytest.raises(Conflict):
        c.end(7, "done", None)
    c.face_check_finished(passed=True)
    c.face_check_finished(passed=False)  # a later failed check does not undo a pass
    ended = c.end(7, "sold", "ok")
    assert (ended.target, ended.reason, ended.disposition, ended.notes) == (SessionState.WRAP_UP, "completed",
                                                                             "sold", "ok")
    assert ended.missing_steps == ()


def test_complete_recordings_are_required_only_where_the_service_says_so():
    lax = call(Checklist())
    assert lax.end(7, "done", None, [ISSUE]).recording_issues == (ISSUE,)
    strict = call(Checklist(require_complete_recordings=True))
    with pytest.raises(Conflict) as err:
        strict.end(7, "done", None, [ISSUE])
    assert err.value.code == "evidence_incomplete"
    assert err.value.details == [{"field": "recordings", "problem": "recording_missing", "party": "customer"}]
    assert strict.ended is None
    assert strict.end(7, "done", None, []).reason == "completed"


def test_a_supervisor_ends_whatever_is_missing_but_must_say_why():
    c = call(Checklist(steps=STEPS.steps, require_complete_recordings=True))
    with pytest.raises(Invalid) as err:
        c.override_end("", "x", None, [ISSUE])
    assert err.value.code == "missing_field"
    ended = c.override_end("customer unwell", "stopped", "n", [ISSUE])
    assert ended.reason == "ended_by_supervisor"
    assert ended.override_reason == "customer unwell"
    assert ended.missing_steps == ("identity", "disclosure")
    assert ended.recording_issues == (ISSUE,)


@pytest.mark.parametrize("end, target, reason", [
    (lambda c: c.customer_left(), SessionState.WRAP_UP, "customer_left"),
    (lambda c: c.party_lost("customer_disconnected"), SessionState.INTERRUPTED, "customer_disconnected"),
])
def test_a_party_leaving_ends_the_call(end, target, reason):
    c = call()
    ended = end(c)
    assert (ended.target, ended.reason, ended.agent_id) == (target, reason, 7)
    assert c.ended is ended


def test_an_ended_call_refuses_everything():
    c = call(Checklist())
    c.end(7, "done", None)
    for attempt in (lambda: c.mark(7, "disclosure"), lambda: c.end(7, "again", None), c.customer_left,
                    lambda: c.override_end("r", None, None), lambda: c.party_lost("x")):
        with pytest.raises(Conflict) as err:
            attempt()
        assert err.value.code == "invalid_state"
    assert c.ended.reason == "completed"
