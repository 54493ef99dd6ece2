"""Routing engine: per-service queue settings, and changes applied at once (service rules,
switching a service off and on, an agent's skills). FakeClock, deterministic."""

from __future__ import annotations

import pytest

from vbranch.clock import FakeClock
from vbranch.domain.routing import (
    AgentState,
    OfferMade,
    OfferRevoked,
    RoutingEngine,
    RoutingError,
    ServiceRules,
    SessionConnected,
)
from vbranch.domain.session_state import SessionState

A = AgentState
LOAN = {"code": "loan", "required_skills": {"loan": 1}}


def offers(events) -> list[tuple[str, str]]:
    return [(e.session_id, e.agent_id) for e in events if isinstance(e, OfferMade)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def engine(clock, *services, **kw) -> RoutingEngine:
    return RoutingEngine(clock, services=services or [LOAN], **kw)


# --------------------------------------------------------------------------- per-service settings


def test_decline_cooldown_is_per_service(clock):
    e = engine(clock, {**LOAN, "decline_cooldown_s": 5},
               {"code": "acct", "required_skills": {"loan": 1}, "decline_cooldown_s": 60})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s_loan", "loan")
    e.decline("a", "s_loan")
    e.set_agent_status("a", "away")
    e.enqueue("s_acct", "acct")
    e.set_agent_status("a", "available")
    e.decline("a", "s_acct")
    clock.advance(5)
    assert offers(e.tick()) == [("s_loan", "a")]  # 5 s for loan
    e.accept("a", "s_loan")
    e.end_call("a")
    assert offers(e.wrapup_done("a")) == []  # s_acct is still cooling down
    clock.advance(54)
    assert offers(e.tick()) == []
    clock.advance(1)  # 60 s for acct
    assert offers(e.tick()) == [("s_acct", "a")]


def test_zero_decline_cooldown_reoffers_at_once(clock):
    e = engine(clock, {**LOAN, "decline_cooldown_s": 0})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    assert offers(e.decline("a", "s")) == [("s", "a")]


def test_service_level_threshold_is_per_service(clock):
    e = engine(clock, {**LOAN, "service_level_threshold_s": 10},
               {"code": "acct", "required_skills": {"loan": 1}, "service_level_threshold_s": 60})
    e.enqueue("s_loan", "loan")
    e.enqueue("s_acct", "acct")
    clock.advance(30)  # both answered after 30 s
    assert offers(e.agent_login("a", {"loan": 1}, status="available")) == [("s_loan", "a")]
    assert offers(e.agent_login("b", {"loan": 1}, status="available")) == [("s_acct", "b")]
    e.accept("a", "s_loan")
    e.accept("b", "s_acct")
    stats = e.stats().services
    assert stats["loan"].service_level == 0.0 and stats["loan"].service_level_threshold_s == 10
    assert stats["acct"].service_level == 1.0 and stats["acct"].service_level_threshold_s == 60


def test_wrapup_is_per_service(clock):
    e = engine(clock, {**LOAN, "wrapup_s": 5}, {"code": "acct", "required_skills": {"acct": 1}, "wrapup_s": 90})
    e.agent_login("a", {"loan": 1, "acct": 1}, status="available")
    e.enqueue("s", "acct")
    e.accept("a", "s")
    e.end_call("a")
    assert e.agent("a").until == clock.now() + 90
    assert e.next_deadline() == clock.now() + 90


def test_rules_refuse_values_the_engine_cannot_run():
    for bad in ({"offer_timeout_s": 0}, {"wrapup_s": -1}, {"decline_cooldown_s": float("inf")},
                {"service_level_threshold_s": float("nan")}, {"aging_points_per_min": True},
                {"active": "yes"}):
        with pytest.raises(RoutingError) as err:
            ServiceRules.from_dict({**LOAN, **bad})
        assert err.value.code == "invalid_rules", bad


# --------------------------------------------------------------------------- service changes at once


def test_same_rules_again_change_nothing(clock):
    e = engine(clock)
    e.enqueue("s", "loan")
    e.changed_positions()
    assert e.add_service(dict(LOAN)) == []
    assert e.changed_positions() == []


def test_new_offer_timeout_applies_to_the_next_offer_not_the_running_one(clock):
    e = engine(clock, {**LOAN, "offer_timeout_s": 15})
    e.agent_login("a", {"loan": 1}, status="available")
    (first,) = [ev for ev in e.enqueue("s1", "loan") if isinstance(ev, OfferMade)]
    assert e.add_service({**LOAN, "offer_timeout_s": 3}) == []
    assert e.agent("a").until == first.expires_at == clock.now() + 15  # the running offer keeps its expiry
    e.decline("a", "s1")
    e.agent_login("b", {"loan": 1}, status="available")
    (second,) = [ev for ev in e.enqueue("s2", "loan") if isinstance(ev, OfferMade)]
    assert second.expires_at == clock.now() + 3


def test_new_wrapup_and_cooldown_apply_from_the_next_call_and_decline(clock):
    e = engine(clock, {**LOAN, "wrapup_s": 30, "decline_cooldown_s": 30})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")
    e.accept("a", "s1")
    e.add_service({**LOAN, "wrapup_s": 2, "decline_cooldown_s": 4})
    e.end_call("a")
    assert e.agent("a").until == clock.now() + 2
    e.enqueue("s2", "loan")
    clock.advance(2)
    assert offers(e.tick()) == [("s2", "a")]
    e.decline("a", "s2")
    assert e.next_deadline() == clock.now() + 4


def test_new_aging_reorders_the_waiting_sessions_at_once(clock):
    e = engine(clock, {**LOAN, "aging_points_per_min": 0})
    e.enqueue("old", "loan", 0)
    clock.advance(600)  # 10 minutes
    e.enqueue("vip", "loan", 5)
    assert e.queue("loan") == ["vip", "old"]
    e.changed_positions()
    e.add_service({**LOAN, "aging_points_per_min": 1.0})  # old: 0 + 10 points > 5
    assert e.queue("loan") == ["old", "vip"]
    assert {(u.session_id, u.position) for u in e.changed_positions()} == {("old", 1), ("vip", 2)}


def test_relaxed_requirement_offers_at_once(clock):
    e = engine(clock, {"code": "loan", "required_skills": {"loan": 4}})
    e.agent_login("a", {"loan": 2}, status="available")
    e.enqueue("s", "loan")
    assert offers(e.add_service({"code": "loan", "required_skills": {"loan": 2}})) == [("s", "a")]


# --------------------------------------------------------------------------- switching a service off and on


def test_inactive_service_makes_no_offers_and_its_customers_keep_their_place(clock):
    e = engine(clock)
    e.enqueue("s1", "loan")
    clock.advance(1)
    e.enqueue("s2", "loan", 9)
    assert e.add_service({**LOAN, "active": False}) == []
    assert offers(e.agent_login("a", {"loan": 5}, status="available")) == []
    clock.advance(1)
    e.enqueue("s3", "loan")  # a customer who connects after the switch-off still gets a place
    assert offers(e.tick()) == [] and e.next_deadline() is None
    assert e.queue("loan") == ["s2", "s1", "s3"]
    assert e.agent("a").state is A.AVAILABLE
    assert e.stats().services["loan"].waiting == 3


def test_inactive_service_is_closed_without_an_opening_time_and_without_an_estimate(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s0", "loan")
    e.accept("a", "s0")  # a busy agent is staffed
    e.enqueue("s", "loan")
    assert e.position("s").estimated_wait_s is not None
    e.changed_positions()
    e.add_service({**LOAN, "active": False})
    status = e.service_status("loan")
    assert (status.open, status.active, status.opens_at, status.agents_staffed) == (False, False, None, 1)
    assert e.position("s").estimated_wait_s is None
    assert [(u.session_id, u.estimated_wait_s) for u in e.changed_positions()] == [("s", None)]
    stats = e.stats().services["loan"]
    assert (stats.open, stats.active) == (False, False)


def test_switching_off_is_reported_even_when_nothing_else_changed(clock):
    # no agent staffed: the estimate is None before and after, yet the customer must hear of it
    e = engine(clock)
    e.enqueue("s", "loan")
    e.changed_positions()
    e.add_service({**LOAN, "active": False})
    assert [u.session_id for u in e.changed_positions()] == ["s"]
    e.add_service({**LOAN, "active": True})
    assert [u.session_id for u in e.changed_positions()] == ["s"]


def test_reactivated_service_offers_in_the_usual_order(clock):
    e = engine(clock, {**LOAN, "active": False})
    e.enqueue("s1", "loan")
    clock.advance(1)
    e.enqueue("s2", "loan")
    e.agent_login("a", {"loan": 1}, status="available")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="available")
    ev = e.add_service(dict(LOAN))
    assert offers(ev) == [("s1", "a"), ("s2", "b")]
    assert e.service_status("loan").open is True


def test_offer_under_way_survives_a_switch_off_and_may_be_accepted(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s1", "loan")
    e.enqueue("s2", "loan")
    e.add_service({**LOAN, "active": False})
    assert e.session("s1").state is SessionState.OFFERED
    ev = e.accept("a", "s1")
    assert any(isinstance(x, SessionConnected) for x in ev)
    e.end_call("a")
    assert offers(e.wrapup_done("a")) == []  # s2 waits: no new offer
    assert e.agent("a").state is A.AVAILABLE


def test_declined_or_expired_offer_of_an_inactive_service_is_not_made_again(clock):
    e = engine(clock, {**LOAN, "decline_cooldown_s": 0})
    e.agent_login("a", {"loan": 1}, status="available")
    e.agent_login("b", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    e.add_service({**LOAN, "decline_cooldown_s": 0, "active": False})
    ev = e.decline("a", "s")
    assert ev[0] == OfferRevoked("s", "a", "declined") and offers(ev) == []
    assert e.session("s").state is SessionState.QUEUED


def test_an_agent_serving_two_services_skips_the_inactive_one(clock):
    e = engine(clock, {**LOAN, "aging_points_per_min": 0},
               {"code": "acct", "required_skills": {"acct": 1}, "aging_points_per_min": 0})
    e.enqueue("vip_loan", "loan", 9)
    e.enqueue("acct1", "acct", 0)
    e.add_service({**LOAN, "aging_points_per_min": 0, "active": False})
    assert offers(e.agent_login("a", {"loan": 1, "acct": 1}, status="available")) == [("acct1", "a")]


# --------------------------------------------------------------------------- an agent's skills at once


def test_new_skills_of_an_available_agent_apply_at_once(clock):
    e = engine(clock, {"code": "pb", "required_skills": {"private_banking": 4}})
    e.agent_login("a", {"lending": 4}, status="available")
    e.enqueue("s", "pb")
    assert offers(e.update_agent_skills("a", {"lending": 4, "private_banking": 4})) == [("s", "a")]
    assert e.agent("a").skills == {"lending": 4, "private_banking": 4}


def test_removed_skill_stops_offers_at_once(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 3}, status="available")
    clock.advance(1)
    e.agent_login("b", {"loan": 1}, status="available")
    e.update_agent_skills("a", {})
    assert e.service_status("loan").agents_staffed == 1
    assert offers(e.enqueue("s", "loan")) == [("s", "b")]


def test_skill_update_keeps_state_idle_time_and_a_running_offer(clock):
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    before = e.agent("a")
    clock.advance(3)
    assert e.update_agent_skills("a", {"loan": 2, "fx": 1}) == []  # no events: same state
    after = e.agent("a")
    assert (after.state, after.since, after.until, after.session_id, after.idle_since) == (
        A.OFFERED, before.since, before.until, "s", before.idle_since)
    clock.advance(12)  # the offer still expires when it was going to
    with pytest.raises(RoutingError) as err:
        e.accept("a", "s")
    assert err.value.code == "offer_expired"
    assert e.tick()[0] == OfferRevoked("s", "a", "timeout")


def test_skill_update_during_a_call_and_wrap_up(clock):
    e = engine(clock, {**LOAN, "wrapup_s": 30}, {"code": "fx", "required_skills": {"fx": 1}})
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    e.accept("a", "s")
    e.enqueue("f", "fx")
    assert e.update_agent_skills("a", {"fx": 2}) == []
    assert e.agent("a").state is A.BUSY and e.agent("a").session_id == "s"
    e.end_call("a")
    until = e.agent("a").until
    e.update_agent_skills("a", {"fx": 3})
    assert e.agent("a").until == until
    clock.advance(30)
    assert offers(e.tick()) == [("f", "a")]  # the new skill, after the wrap-up


def test_skill_update_of_an_away_agent_counts_for_staffing(clock):
    e = engine(clock, {"code": "fx", "required_skills": {"fx": 1}})
    e.agent_login("a", {}, status="available")
    e.set_agent_status("a", "away")
    e.update_agent_skills("a", {"fx": 1})
    assert e.service_status("fx").agents_staffed == 0  # away is not staffed
    e.set_agent_status("a", "available")
    assert e.service_status("fx").agents_staffed == 1


def test_skill_update_errors_change_nothing(clock):
    e = engine(clock)
    with pytest.raises(RoutingError) as err:
        e.update_agent_skills("ghost", {"loan": 1})
    assert err.value.code == "unknown_agent"
    e.agent_login("a", {"loan": 1}, status="available")
    with pytest.raises(RoutingError) as err:
        e.update_agent_skills("a", {"loan": 6})
    assert err.value.code == "invalid_argument"
    assert e.agent("a").skills == {"loan": 1}


def test_relogin_keeps_a_running_offers_expiry(clock):
    # agent_login of a logged-in agent is a skill update too: same guarantees
    e = engine(clock)
    e.agent_login("a", {"loan": 1}, status="available")
    e.enqueue("s", "loan")
    until = e.agent("a").until
    e.agent_login("a", {"loan": 2})
    assert e.agent("a").until == until
