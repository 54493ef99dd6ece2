"""Unit tests of the routing engine, one rule at a time, on a FakeClock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from vbranch.clock import FakeClock
from vbranch.domain.routing import (
    AgentState,
    AgentStateChanged,
    BusinessHours,
    CallEnded,
    OfferMade,
    OfferRevoked,
    PositionUpdate,
    RoutingEngine,
    RoutingError,
    ServiceRules,
    SessionConnected,
    SessionLeft,
    WaitingSession,
)
from vbranch.domain.session_state import SessionState

A = AgentState


def offers(events) -> list[tuple[str, str]]:
    return [(e.session_id, e.agent_id) for e in events if isinstance(e, OfferMade)]


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def engine(clock, *services, **kw) -> RoutingEngine:
    return RoutingEngine(clock, services=services or [{"code": "loan", "required_skills": {"loan": 1}}], **kw)


def serve(e: RoutingEngine, agent: str, events) -> str:
    """Accept the offer made to agent in events; return the session id."""
    (sid,) = [s for s, a in offers(events) if a == agent]
    e.accept(agent, sid)
    return sid


# --------------------------------------------------------------------------- order


def test_priority_first_then_fifo(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 0})
    e.enqueue("low1", "loan", 1)
    clock.advance(1)
    e.enqueue("high", "loan", 5)
    clock.advance(1)
    e.enqueue("low2", "loan", 1)
    e.enqueue("mid", "loan", 3)
    assert e.queue("loan") == ["high", "mid", "low1", "low2"]
    ev = e.agent_login("a", {"loan": 1}, status="available")
    assert offers(ev) == [("high", "a")]
    order = []
    for _ in range(4):
        sid = serve(e, "a", ev) if offers(ev) else None
        order.append(sid)
        e.end_call("a")
        ev = e.wrapup_done("a")
    assert order == ["high", "mid", "low1", "low2"]


def test_aging_lets_a_low_priority_customer_overtake(clock):
    # 1 point per minute: a priority-0 session waiting 6 minutes beats a fresh priority-5 one
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 1.0})
    e.enqueue("old_low", "loan", 0)
    clock.advance(6 * 60)
    e.enqueue("new_high", "loan", 5)
    assert e.queue("loan") == ["old_low", "new_high"]
    ev = e.agent_login("a", {"loan": 1}, status="available")
    assert offers(ev) == [("old_low", "a")]


def test_aging_not_yet_enough(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 1.0})
    e.enqueue("old_low", "loan", 0)
    clock.advance(4 * 60)
    e.enqueue("new_high", "loan", 5)
    assert e.queue("loan") == ["new_high", "old_low"]
    # the order never changes with time (linear aging): still the same 10 minutes later
    clock.advance(600)
    assert e.queue("loan") == ["new_high", "old_low"]
    assert offers(e.agent_login("a", {"loan": 1}, status="available")) == [("new_high", "a")]


def test_equal_effective_priority_goes_to_the_longer_wait(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 1.0})
    e.enqueue("p0", "loan", 0)
    clock.advance(120)
    e.enqueue("p2", "loan", 2)  # same effective priority as p0 now (0 + 2 min)
    assert e.queue("loan") == ["p0", "p2"]


@pytest.mark.parametrize("waited, expected", [(60, "loan9"), (120, "risk0")])
def test_across_services_the_agent_takes_the_higher_effective_priority(clock, waited, expected):
    e = engine(
        clock,
        {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 0},
        {"code": "risk", "required_skills": {"risk": 1}, "aging_points_per_min": 6.0},
    )
    e.enqueue("loan9", "loan", 9)
    e.enqueue("risk0", "risk", 0)
    clock.advance(waited)  # risk0: 0 + 6/min -> 6 after 1 min (< 9), 12 after 2 min (> 9)
    assert offers(e.agent_login("a", {"loan": 1, "risk": 1}, status="available")) == [(expected, "a")]


# --------------------------------------------------------------------------- skills and rings

RINGS = {
    "code": "loan",
    "required_skills": {"loan": 3, "mandarin": 2},
    "escalation": [
        {"after_s": 0, "min_proficiency": 4},
        {"after_s": 60, "min_proficiency": 2},
        {"after_s": 180, "min_proficiency": 1},
    ],
}


def test_required_skills_without_rings(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 3, "mandarin": 2}})
    e.agent_login("weak", {"loan": 2, "mandarin": 5}, status="available")
    e.agent_login("no_mandarin", {"loan": 5}, status="available")
    assert offers(e.enqueue("s", "loan")) == []
    clock.advance(3600)
    assert offers(e.tick()) == []  # no rings: the requirement never relaxes
    assert offers(e.agent_login("ok", {"loan": 3, "mandarin": 2}, status="available")) == [("s", "ok")]


def test_rings_relax_with_waiting_time(clock):
    e = engine(clock, RINGS)
    e.agent_login("p2", {"loan": 2, "mandarin": 2}, status="available")
    e.agent_login("p1", {"loan": 1, "mandarin": 5}, status="available")
    assert offers(e.enqueue("s", "loan")) == []
    assert e.session("s").ring == 0
    assert e.next_deadline() == clock.now() + 60
    clock.advance(59)
    assert offers(e.tick()) == []
    clock.advance(1)  # ring 1 (min 2 on every required skill): p2 qualifies, p1 not yet
    assert offers(e.tick()) == [("s", "p2")]
    e.decline("p2", "s")
    clock.advance(120)  # ring 2 (min 1): p1 qualifies; p2 is still cooling down from its decline
    ev = e.tick()
    assert offers(ev) == [("s", "p1")]


def test_ring_min_replaces_the_per_skill_minimum_upwards(clock):
    # ring 0 asks 4 on every required skill although the service asks loan 3 / mandarin 2
    e = engine(clock, RINGS)
    e.agent_login("meets_base", {"loan": 3, "mandarin": 2}, status="available")
    assert offers(e.enqueue("s", "loan")) == []
    assert offers(e.agent_login("p4", {"loan": 4, "mandarin": 4}, status="available")) == [("s", "p4")]


def test_ring_needs_every_required_skill(clock):
    e = engine(clock, RINGS)
    e.enqueue("s", "loan")
    clock.advance(200)  # ring 2: min 1 on loan and mandarin
    e.tick()
    assert offers(e.agent_login("loan_only", {"loan": 5}, status="available")) == []
    assert offers(e.agent_login("both", {"loan": 1, "mandarin": 1}, status="available")) == [("s", "both")]


def test_base_requirement_applies_before_a_late_first_ring(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 3},
                       "escalation": [{"after_s": 30, "min_proficiency": 1}]})
    e.agent_login("p1", {"loan": 1}, status="available")
    assert offers(e.enqueue("s", "loan")) == []
    clock.advance(30)
    assert offers(e.tick()) == [("s", "p1")]


def test_ring_is_applied_by_any_operation_not_only_tick(clock):
    e = engine(clock, RINGS)
    e.enqueue("s", "loan")
    clock.advance(61)
    assert offers(e.agent_login("p2", {"loan": 2, "mandarin": 2}, status="available")) == [("s", "p2")]


def test_restored_old_session_starts_in_a_later_ring(clock):
    e = engine(clock, RINGS)
    e.restore([WaitingSession("s", "loan", 0, clock.now() - 200)])
    assert e.session("s").ring == 2
    assert offers(e.agent_login("p1", {"loan": 1, "mandarin": 1}, status="available")) == [("s", "p1")]


# --------------------------------------------------------------------------- agent choice


def test_longest_idle_agent_gets_the_session(clock):
    e = engine(clock)
    e.agent_login("first", {"loan": 1}, status="available")
    clock.advance(5)
    e.agent_login("second", {"loan": 1}, status="available")
    clock.advance(5)
    assert offers(e.enqueue("s1", "loan")) == [("s1", "first")]
    assert offers(e.enqueue("s2", "loan")) == [("s2", "second")]


def test_idle_time_restarts_after_wrap_up(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s1", "loan"))
    e.end_call("a")
    clock.advance(1)
    e.wrapup_done("a")  # a idle since now, b idle for longer
    assert offers(e.enqueue("s2", "loan")) == [("s2", "b")]


def test_tie_on_idle_time_goes_to_higher_proficiency(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1, "mandarin": 1}})
    e.agent_login("junior", {"loan": 2, "mandarin": 2}, status="available")
    e.agent_login("senior", {"loan": 5, "mandarin": 3}, status="available")
    assert offers(e.enqueue("s", "loan")) == [("s", "senior")]


def test_agent_becoming_available_takes_the_best_session_it_is_eligible_for(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 4}, "aging_points_per_min": 0},
               {"code": "acct", "required_skills": {"acct": 1}, "aging_points_per_min": 0})
    e.enqueue("loan_hi", "loan", 9)
    e.enqueue("acct_lo", "acct", 1)
    e.enqueue("acct_hi", "acct", 3)
    ev = e.agent_login("a", {"loan": 2, "acct": 1}, status="available")
    assert offers(ev) == [("acct_hi", "a")]


# --------------------------------------------------------------------------- offers


def test_accept_connects_and_makes_the_agent_busy(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    clock.advance(3)
    ev = e.accept("a", "s")
    assert ev == [AgentStateChanged("a", A.OFFERED, A.BUSY), SessionConnected("s", "a", "loan", 3.0)]
    assert e.agent("a").state is A.BUSY and e.agent("a").session_id == "s"
    assert e.session("s") is None and e.position("s") is None


def test_offer_goes_to_one_agent_at_a_time(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.agent_login("b", {"loan": 1}, status="available")
    ev = e.enqueue("s", "loan")
    assert len(offers(ev)) == 1
    assert e.agent("b").state is A.AVAILABLE


def test_decline_keeps_place_and_agent_is_not_reoffered_during_cooldown(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "decline_cooldown_s": 30})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")  # offered to a
    e.enqueue("s2", "loan")
    ev = e.decline("a", "s1")
    assert ev[:2] == [OfferRevoked("s1", "a", "declined"), AgentStateChanged("a", A.OFFERED, A.AVAILABLE)]
    assert offers(ev) == [("s2", "a")]  # the next one, not s1 again
    assert e.queue("loan") == ["s1", "s2"]  # s1 kept its place
    e.decline("a", "s2")
    assert e.agent("a").state is A.AVAILABLE  # both cooling down
    assert e.next_deadline() == clock.now() + 30  # when the cooldowns end


def test_decline_cooldown_end_reoffers(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "decline_cooldown_s": 30})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    e.decline("a", "s")
    assert e.next_deadline() == clock.now() + 30
    clock.advance(30)
    assert offers(e.tick()) == [("s", "a")]


def test_declined_session_goes_to_another_agent(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    assert offers(e.decline("a", "s")) == [("s", "b")]


def test_decline_restarts_idle_time(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")  # -> a
    ev = e.decline("a", "s1")  # -> b
    assert offers(ev) == [("s1", "b")]
    e.accept("b", "s1")
    clock.advance(1)
    e.agent_login("c", {"loan": 1}, status="available")
    assert offers(e.enqueue("s2", "loan")) == [("s2", "a")]  # a is idle since its decline, before c


def test_offer_timeout_makes_agent_not_responding_and_session_keeps_place(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")
    clock.advance(1)
    e.enqueue("s2", "loan")
    assert e.next_deadline() == clock.now() + 14
    clock.advance(14)
    ev = e.tick()
    assert ev == [OfferRevoked("s1", "a", "timeout"), AgentStateChanged("a", A.OFFERED, A.NOT_RESPONDING)]
    assert e.queue("loan") == ["s1", "s2"]
    assert e.session("s1").state is SessionState.QUEUED
    with pytest.raises(RoutingError) as err:
        e.accept("a", "s1")
    assert err.value.code == "not_offered"
    clock.advance(100)
    assert offers(e.tick()) == []  # not_responding until it says otherwise
    assert offers(e.set_agent_status("a", "available")) == [("s1", "a")]


def test_accept_after_expiry_but_before_tick_is_refused(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    clock.advance(15)
    with pytest.raises(RoutingError) as err:
        e.accept("a", "s")
    assert err.value.code == "offer_expired"
    assert e.agent("a").state is A.OFFERED  # unchanged until tick()
    assert e.tick()[0] == OfferRevoked("s", "a", "timeout")


def test_offer_timeout_is_per_service(clock):
    e = engine(clock, {"code": "loan", "required_skills": {}, "offer_timeout_s": 5})
    e.agent_login("a", {}, status="available")
    (ev,) = of(e.enqueue("s", "loan"), OfferMade)
    assert ev.expires_at == clock.now() + 5


def test_logout_during_offer_revokes_at_once(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")
    e.enqueue("s2", "loan")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="away")
    ev = e.agent_logout("a")
    assert ev == [OfferRevoked("s1", "a", "agent_left"), AgentStateChanged("a", A.OFFERED, A.OFFLINE)]
    assert e.queue("loan") == ["s1", "s2"]
    assert offers(e.set_agent_status("b", "available")) == [("s1", "b")]
    assert e.agent("a") is None


def test_away_during_offer_revokes(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    ev = e.set_agent_status("a", "away")
    assert ev == [OfferRevoked("s", "a", "agent_left"), AgentStateChanged("a", A.OFFERED, A.AWAY)]


def test_customer_leaving_during_offer_frees_the_agent(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")
    e.enqueue("s2", "loan")
    ev = e.abandon("s1")
    assert ev[0] == OfferRevoked("s1", "a", "customer_left")
    assert of(ev, SessionLeft) == [SessionLeft("s1", "loan", 0.0, "abandoned")]
    assert offers(ev) == [("s2", "a")]


def test_abandon_while_queued(clock):
    e = engine(clock)
    e.enqueue("s1", "loan")
    e.enqueue("s2", "loan")
    clock.advance(7)
    assert e.abandon("s1") == [SessionLeft("s1", "loan", 7.0, "abandoned")]
    assert e.queue("loan") == ["s2"]
    assert e.position("s2").position == 1
    with pytest.raises(RoutingError) as err:
        e.abandon("s1")
    assert err.value.code == "unknown_session"


def test_remove_is_not_counted_as_abandoned(clock):
    e = engine(clock)
    e.enqueue("s1", "loan")
    assert e.remove("s1") == [SessionLeft("s1", "loan", 0.0, "removed")]
    assert e.stats().services["loan"].abandoned_total == 0


# --------------------------------------------------------------------------- calls and wrap-up


def test_wrap_up_times_out_to_available(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "wrapup_s": 30})
    e.agent_login("a", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s", "loan"))
    clock.advance(100)
    ev = e.end_call("a", "s")
    assert ev == [CallEnded("s", "a", "loan", "ended"),
                  AgentStateChanged("a", A.BUSY, A.WRAP_UP, clock.now() + 30)]
    assert e.next_deadline() == clock.now() + 30
    e.enqueue("s2", "loan")  # waits: the agent is wrapping up
    clock.advance(30)
    ev = e.tick()
    assert ev[0] == AgentStateChanged("a", A.WRAP_UP, A.AVAILABLE)
    assert offers(ev) == [("s2", "a")]


def test_wrapup_done_ends_wrap_up_early(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s", "loan"))
    e.end_call("a")
    clock.advance(5)
    assert e.wrapup_done("a") == [AgentStateChanged("a", A.WRAP_UP, A.AVAILABLE)]
    with pytest.raises(RoutingError) as err:
        e.wrapup_done("a")
    assert err.value.code == "invalid_state"


def test_away_requested_during_call_applies_after_wrap_up(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s", "loan"))
    assert e.set_agent_status("a", "away") == []
    assert e.agent("a").away_after_call
    e.end_call("a")
    clock.advance(30)
    assert e.tick() == [AgentStateChanged("a", A.WRAP_UP, A.AWAY)]


def test_zero_wrapup(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "wrapup_s": 0})
    e.agent_login("a", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s", "loan"))
    ev = e.end_call("a")
    assert [x.new for x in of(ev, AgentStateChanged)] == [A.WRAP_UP, A.AVAILABLE]


def test_logout_during_call(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    serve(e, "a", e.enqueue("s", "loan"))
    assert e.agent_logout("a") == [CallEnded("s", "a", "loan", "agent_left"),
                                   AgentStateChanged("a", A.BUSY, A.OFFLINE)]


# --------------------------------------------------------------------------- errors


def test_errors_are_typed_and_change_nothing(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.agent_login("b", {"loan": 1}, status="available")
    e.enqueue("s", "loan")  # -> a
    e.enqueue("t", "loan")  # -> b
    cases = [
        (lambda: e.accept("b", "s"), "not_offered"),
        (lambda: e.accept("zz", "s"), "unknown_agent"),
        (lambda: e.accept("a", "nope"), "unknown_session"),
        (lambda: e.decline("b", "s"), "not_offered"),
        (lambda: e.end_call("a"), "invalid_state"),
        (lambda: e.wrapup_done("a"), "invalid_state"),
        (lambda: e.enqueue("s", "loan"), "duplicate_session"),
        (lambda: e.enqueue("x", "nope"), "unknown_service"),
        (lambda: e.enqueue("x", "loan", 10), "invalid_argument"),
        (lambda: e.set_agent_status("a", "busy"), "invalid_argument"),
        (lambda: e.agent_logout("zz"), "unknown_agent"),
        (lambda: e.agent_login("c", {"loan": 6}), "invalid_argument"),
        (lambda: e.abandon("nope"), "unknown_session"),
    ]
    before = (e.agents(), e.queue("loan"), e.next_deadline())
    for call, code in cases:
        with pytest.raises(RoutingError) as err:
            call()
        assert err.value.code == code, (code, err.value)
    assert (e.agents(), e.queue("loan"), e.next_deadline()) == before


def test_invalid_rules():
    with pytest.raises(RoutingError) as err:
        ServiceRules.from_dict({"code": "x", "escalation": [{"after_s": 60, "min_proficiency": 2},
                                                           {"after_s": 0, "min_proficiency": 4}]})
    assert err.value.code == "invalid_rules"
    with pytest.raises(RoutingError):
        ServiceRules.from_dict({"code": "x", "required_skills": {"a": 0}})
    with pytest.raises(RoutingError):
        ServiceRules.from_dict({"code": "x", "business_hours": {"timezone": "Mars/Olympus"}})


# --------------------------------------------------------------------------- positions and estimated wait


def test_positions_are_ranks_in_dispatch_order_per_service(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "aging_points_per_min": 0},
               {"code": "acct", "required_skills": {"acct": 1}})
    e.enqueue("l1", "loan", 0)
    e.enqueue("a1", "acct", 0)
    e.enqueue("l2", "loan", 5)
    assert [e.position(s).position for s in ("l2", "l1", "a1")] == [1, 2, 1]


def test_estimated_wait_uses_default_then_moving_average_and_staffing(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "default_handle_time_s": 180,
                       "handle_time_samples": 2, "wrapup_s": 0}, eta_granularity_s=1)
    for i in range(4):
        e.enqueue(f"s{i}", "loan")
    assert e.position("s3").estimated_wait_s is None  # nobody staffed
    e.agent_login("away", {"loan": 1}, status="away")
    assert e.position("s3").estimated_wait_s is None  # away is not staffed
    e.agent_login("a", {"loan": 1}, status="available")  # takes s0
    assert e.position("s3") == PositionUpdate("s3", "loan", 4, 720)  # offered s0 still counts; 180 * 4 / 1
    e.accept("a", "s0")
    assert e.position("s3") == PositionUpdate("s3", "loan", 3, 540)
    clock.advance(60)
    e.end_call("a")  # handle time 60 s (no wrap-up); a takes s1 at once
    assert e.position("s3") == PositionUpdate("s3", "loan", 3, 180)  # moving average [60]
    e.agent_login("b", {"loan": 1}, status="available")  # takes s2; 2 staffed
    assert e.position("s3") == PositionUpdate("s3", "loan", 3, 90)


def test_estimated_wait_is_rounded_up_to_the_granularity(clock):
    e = engine(clock, eta_granularity_s=5)
    e.agent_login("a", {"loan": 1}, status="away")
    e.agent_login("b", {"loan": 1}, status="away")
    e.agent_login("c", {"loan": 1}, status="available")
    e.set_agent_status("a", "available")
    e.set_agent_status("b", "available")
    e.enqueue("busy1", "loan")
    e.enqueue("busy2", "loan")
    e.enqueue("busy3", "loan")
    for aid in ("a", "b", "c"):
        e.accept(aid, e.agent(aid).session_id)
    e.enqueue("s", "loan")
    assert e.position("s").estimated_wait_s == 60  # 180 * 1 / 3 = 60
    e.agent_login("d", {"loan": 1}, status="away")
    e.set_agent_status("d", "available")  # takes s -> 4 staffed: 180 / 4 = 45
    assert e.position("s").estimated_wait_s == 45
    e.agent_login("e", {"loan": 1}, status="away")
    e.set_agent_status("e", "available")  # 5 staffed: 36 -> 40
    assert e.position("s").estimated_wait_s == 40


def test_not_responding_agents_count_as_staffed(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    clock.advance(15)
    e.tick()
    assert e.agent("a").state is A.NOT_RESPONDING
    assert e.service_status("loan").agents_staffed == 1


def test_changed_positions_reports_only_changes(clock):
    e = engine(clock, eta_granularity_s=1)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("first", "loan")
    e.accept("a", "first")  # a is busy: one staffed agent
    for i in range(4):
        e.enqueue(f"s{i}", "loan")
    first = e.changed_positions()
    assert [(u.session_id, u.position, u.estimated_wait_s) for u in first] == [
        ("s0", 1, 180), ("s1", 2, 360), ("s2", 3, 540), ("s3", 4, 720)]
    assert e.changed_positions() == []
    e.abandon("s2")
    assert [(u.session_id, u.position) for u in e.changed_positions()] == [("s3", 3)]
    e.enqueue("s4", "loan")
    assert [(u.session_id, u.position) for u in e.changed_positions()] == [("s4", 4)]
    e.agent_login("b", {"loan": 1}, status="available")  # takes s0; staffing changes every estimate
    assert {u.session_id for u in e.changed_positions()} == {"s0", "s1", "s3", "s4"}
    e.agent_login("c", {"other": 1}, status="away")  # cannot serve loan: no change
    assert e.changed_positions() == []


def test_due_position_updates_after_ten_seconds(clock):
    e = engine(clock)
    e.enqueue("s0", "loan")
    e.changed_positions()
    clock.advance(5)
    e.enqueue("s1", "loan")
    e.changed_positions()
    clock.advance(5)
    assert [u.session_id for u in e.due_position_updates(10)] == ["s0"]
    assert e.due_position_updates(10) == []
    clock.advance(5)
    assert [u.session_id for u in e.due_position_updates(10)] == ["s1"]
    e.abandon("s0")
    clock.advance(100)
    assert [u.session_id for u in e.due_position_updates(10)] == ["s1"]


# --------------------------------------------------------------------------- business hours and staffing

HOURS = {"timezone": "Asia/Shanghai", "days": [0, 1, 2, 3, 4], "open": "09:00", "close": "17:00"}


def sh(*args) -> float:
    return datetime(*args, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_business_hours(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "business_hours": HOURS})
    # 2027-01-04 is a Monday
    assert e.service_status("loan", sh(2027, 1, 4, 9, 0)).open
    assert e.service_status("loan", sh(2027, 1, 4, 16, 59)).open
    closed = e.service_status("loan", sh(2027, 1, 4, 17, 0))
    assert not closed.open and closed.opens_at == sh(2027, 1, 5, 9, 0)
    sat = e.service_status("loan", sh(2027, 1, 9, 12, 0))
    assert not sat.open and sat.opens_at == sh(2027, 1, 11, 9, 0)
    assert not e.service_status("loan", sh(2027, 1, 4, 8, 59)).open


def test_business_hours_overnight_and_always_open(clock):
    h = BusinessHours("Asia/Shanghai", (4,), "22:00", "06:00")  # Friday night
    assert h.is_open(sh(2027, 1, 8, 23, 0)) and h.is_open(sh(2027, 1, 9, 5, 59))
    assert not h.is_open(sh(2027, 1, 9, 6, 0)) and not h.is_open(sh(2027, 1, 8, 21, 0))
    e = engine(clock, {"code": "x", "business_hours": {}})
    status = e.service_status("x")
    assert status.open and status.opens_at == clock.now()


def test_service_status_counts_agents_with_the_skills(clock):
    e = engine(clock, RINGS)
    assert e.service_status("loan").agents_staffed == 0  # "no agent logged in for it"
    e.agent_login("p1", {"loan": 1, "mandarin": 1}, status="available")  # serves from ring 2 on
    e.agent_login("away", {"loan": 5, "mandarin": 5}, status="away")
    e.agent_login("other", {"risk": 5}, status="available")
    st = e.service_status("loan")
    assert (st.agents_staffed, st.agents_available) == (1, 1)
    e.agent_logout("p1")
    assert e.service_status("loan").agents_staffed == 0


# --------------------------------------------------------------------------- stats


def test_stats(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 1}, "service_level_threshold_s": 20},
               {"code": "acct", "required_skills": {"acct": 1}}, stats_window_s=600)
    e.agent_login("a", {"loan": 1}, status="away")
    e.agent_login("b", {"acct": 1}, status="away")
    e.enqueue("s1", "loan")
    e.enqueue("s2", "loan")
    e.enqueue("s3", "loan")
    clock.advance(10)
    e.enqueue("x1", "acct")
    serve(e, "a", e.set_agent_status("a", "available"))  # s1 after 10 s: within 20 s
    e.end_call("a")
    clock.advance(20)
    serve(e, "a", e.wrapup_done("a"))  # s2 after 30 s: not within
    e.abandon("s3")
    st = e.stats()
    loan = st.services["loan"]
    assert (loan.waiting, loan.answered, loan.abandoned) == (0, 2, 1)
    assert loan.service_level == 0.5
    assert loan.abandonment_rate == pytest.approx(1 / 3)
    acct = st.services["acct"]
    assert (acct.waiting, acct.longest_wait_s, acct.service_level) == (1, 20.0, None)
    assert st.agents_by_state["busy"] == 1 and st.agents_by_state["away"] == 1
    assert st.waiting_total == 1
    clock.advance(601)  # out of the window
    loan = e.stats().services["loan"]
    assert (loan.answered, loan.abandoned, loan.service_level) == (0, 0, None)
    assert (loan.answered_total, loan.abandoned_total) == (2, 1)


# --------------------------------------------------------------------------- restart


def test_restore_keeps_the_order(clock):
    services = [{"code": "loan", "required_skills": {"loan": 1}},
                {"code": "acct", "required_skills": {"acct": 1}, "aging_points_per_min": 0}]
    e1 = RoutingEngine(clock, services=services)
    for i, (svc, prio) in enumerate([("loan", 0), ("acct", 3), ("loan", 5), ("loan", 0), ("acct", 3),
                                     ("loan", 2), ("acct", 9)]):
        e1.enqueue(f"s{i}", svc, prio)
        clock.advance(30 if i % 2 else 0)  # some share an enqueue time
    saved = e1.waiting_sessions()
    clock.advance(100)
    e2 = RoutingEngine(clock, services=services)
    e2.restore(saved)
    for svc in ("loan", "acct"):
        assert e2.queue(svc) == e1.queue(svc)
    # and they are served in the same order
    got = []
    for eng in (e1, e2):
        order = []
        ev = eng.agent_login("a", {"loan": 1, "acct": 1}, status="available")
        while offers(ev):
            order.append(serve(eng, "a", ev))
            eng.end_call("a")
            ev = eng.wrapup_done("a")
        got.append(order)
    assert got[0] == got[1] and len(got[0]) == 7


def test_restore_rejects_duplicates_without_changes(clock):
    e = engine(clock)
    with pytest.raises(RoutingError):
        e.restore([("s1", "loan", 0, clock.now()), ("s1", "loan", 0, clock.now())])
    assert e.queue("loan") == []


def test_service_rules_can_change_while_sessions_wait(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 3}})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    assert offers(e.add_service({"code": "loan", "required_skills": {"loan": 1}})) == [("s", "a")]


def test_relogin_updates_skills(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 3}})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    assert offers(e.agent_login("a", {"loan": 3})) == [("s", "a")]


def test_nothing_to_do_means_no_deadline(clock):
    e = engine(clock)
    assert e.next_deadline() is None
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    e.accept("a", "s")
    assert e.next_deadline() is None  # a call has no timer


def test_position_report_bookkeeping_stays_bounded(clock):
    e = engine(clock)
    e.enqueue("keep", "loan")
    for i in range(3000):
        e.enqueue(f"s{i}", "loan", 9)  # ahead of "keep": its position changes every time
        e.changed_positions()
        e.abandon(f"s{i}")
        e.changed_positions()
    assert len(e._report_heap) <= 4 * 1 + 1024
    clock.advance(10)
    assert [u.session_id for u in e.due_position_updates(10)] == ["keep"]


def test_customers_away_keep_their_places_and_get_no_offers(clock):
    """After a restart the queue comes back away: only customers who reconnect are offered, in order."""
    e = RoutingEngine(clock, services=[{"code": "loan", "required_skills": {"lending": 1}}])
    e.restore([WaitingSession(f"s{i}", "loan", 0, clock.now() - 100 + i) for i in range(3)], away=True)
    assert offers(e.agent_login("a1", {"lending": 2}, status="available")) == []
    assert [e.position(f"s{i}").position for i in range(3)] == [1, 2, 3]
    assert e.session("s0").away
    assert offers(e.customer_back("s2")) == [("s2", "a1")]  # the first one back is served
    assert e.position("s2").position == 3  # ... but nobody's place changed
    assert e.customer_back("s2") == []
    # an offer to a customer who drops is revoked; the agent keeps its idle time and takes the next one
    e.customer_back("s1")
    events = e.customer_away("s2")
    revoked = of(events, OfferRevoked)
    assert [(r.session_id, r.reason) for r in revoked] == [("s2", "customer_away")]
    assert offers(events) == [("s1", "a1")]
    assert e.session("s2").state is SessionState.QUEUED and e.session("s2").away
    assert e.customer_away("s2") == []
    with pytest.raises(RoutingError) as err:
        e.customer_away("nobody")
    assert err.value.code == "unknown_session"
