"""Property tests of the routing engine: random operation sequences against a model.

The model re-derives eligibility (skills, escalation rings, decline cooldowns),
order and agent choice on its own and checks every event the engine emits:

- an offer only goes to an agent eligible for the session at that moment;
- no session is offered to two agents at once, no agent holds two sessions;
- equal priority within a service is first-come first-served, and more
  generally no eligible queued session with a higher effective priority is
  passed over;
- the offer goes to the longest-idle eligible available agent;
- after every operation no available agent is eligible for a queued session;
- invalid operations raise the expected RoutingError code and change nothing;
- reported positions always match the current positions;
- a customer away keeps its place and is never offered; its offer under way is
  revoked; back, it is offered in its old place;
- all of this still holds while service rules change (aging, cooldown, timeouts,
  escalation, switching a service off and on: an inactive service's sessions are
  never offered) and while logged-in agents' skills change.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vbranch.clock import FakeClock
from vbranch.domain.routing import (
    AgentStateChanged,
    CallEnded,
    OfferMade,
    OfferRevoked,
    RoutingEngine,
    RoutingError,
    SessionConnected,
    SessionLeft,
)

SERVICES: list[dict[str, Any]] = [
    {"code": "a", "required_skills": {"x": 3},
     "escalation": [{"after_s": 0, "min_proficiency": 4}, {"after_s": 10, "min_proficiency": 2},
                    {"after_s": 30, "min_proficiency": 1}],
     "aging_points_per_min": 1.0, "offer_timeout_s": 15, "wrapup_s": 30, "decline_cooldown_s": 20},
    {"code": "b", "required_skills": {"x": 1, "y": 2}, "aging_points_per_min": 0,
     "offer_timeout_s": 10, "wrapup_s": 5, "decline_cooldown_s": 0},
    {"code": "c", "required_skills": {"y": 3}, "escalation": [{"after_s": 20, "min_proficiency": 2}],
     "aging_points_per_min": 6.0, "decline_cooldown_s": 40},
]
RULES = {s["code"]: s for s in SERVICES}
AGENTS = ["a0", "a1", "a2", "a3"]
skill_level = st.integers(0, 5)
skills_st = st.builds(lambda x, y: {k: v for k, v in (("x", x), ("y", y)) if v}, skill_level, skill_level)


def requirement(rules: dict[str, Any], waited: float) -> dict[str, int]:
    req = dict(rules["required_skills"])
    for ring in rules.get("escalation", []):
        if waited >= ring["after_s"]:
            req = {k: ring["min_proficiency"] for k in rules["required_skills"]}
    return req


class RoutingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1_800_000_000.0)
        self.e = RoutingEngine(self.clock, services=SERVICES)
        self.agents: dict[str, dict[str, Any]] = {}  # model of logged-in agents
        self.sessions: dict[str, dict[str, Any]] = {}  # model of waiting sessions
        self.excl: dict[tuple[str, str], float] = {}
        self.all_sids: list[str] = []
        self.n = 0
        self.login_n = 0
        self.reported: dict[str, tuple[int, int | None]] = {}
        self.rules: dict[str, dict[str, Any]] = {code: dict(r) for code, r in RULES.items()}  # as changed

    # ------------------------------------------------------------------ model
    @property
    def now(self) -> float:
        return self.clock.now()

    def eligible(self, aid: str, sid: str) -> bool:
        s, a = self.sessions[sid], self.agents[aid]
        rules = self.rules[s["service"]]
        if s["away"] or not rules.get("active", True) or self.excl.get((aid, sid), float("-inf")) > self.now:
            return False
        req = requirement(rules, self.now - s["enq"])
        return all(a["skills"].get(k, 0) >= m for k, m in req.items())

    def eff(self, sid: str) -> float:
        s = self.sessions[sid]
        return s["priority"] + self.rules[s["service"]]["aging_points_per_min"] * (self.now - s["enq"]) / 60

    def agent_rank(self, aid: str, service: str) -> tuple:
        a = self.agents[aid]
        score = sum(a["skills"].get(k, 0) for k in self.rules[service]["required_skills"])
        return (a["idle_since"], -score, a["login_n"])

    def apply(self, events: list) -> None:
        now = self.now
        for ev in events:
            if isinstance(ev, AgentStateChanged):
                a = self.agents.get(ev.agent_id)
                if ev.old == "offline":
                    assert a is None
                    self.agents[ev.agent_id] = a = {"skills": self.pending_skills, "state": "offline",
                                                    "session": None, "idle_since": now, "until": None,
                                                    "login_n": self.login_n}
                    self.login_n += 1
                assert a is not None and a["state"] == ev.old, (ev, a)
                if ev.new == "available":
                    if ev.old == "wrap_up":
                        a["idle_since"] = min(now, a["until"])
                    elif ev.old != "offered" or a.get("declined"):
                        a["idle_since"] = now
                    # offered -> available because the customer left: idle time kept
                a["declined"] = False
                if ev.old == "wrap_up":
                    a["session"] = None  # the session stays with the agent through its wrap-up
                a["state"] = ev.new
                a["until"] = ev.until
                if ev.new == "offline":
                    del self.agents[ev.agent_id]
            elif isinstance(ev, OfferMade):
                sid, aid = ev.session_id, ev.agent_id
                s, a = self.sessions[sid], self.agents[aid]
                assert s["state"] == "queued", f"{sid} offered twice"
                assert a["session"] is None, f"{aid} would hold two sessions"
                assert a["state"] == "offered"
                assert self.eligible(aid, sid), f"{aid} is not eligible for {sid}"
                for other, o in self.sessions.items():
                    if other == sid or o["state"] != "queued" or not self.eligible(aid, other):
                        continue
                    if o["service"] == s["service"] and o["priority"] == s["priority"]:
                        assert (o["enq"], o["n"]) > (s["enq"], s["n"]), f"FCFS: {other} before {sid}"
                    assert self.eff(other) <= self.eff(sid) + 1e-9, f"{other} has a higher priority than {sid}"
                mine = self.agent_rank(aid, s["service"])
                for bid, b in self.agents.items():
                    if bid != aid and b["state"] == "available" and self.eligible(bid, sid):
                        assert self.agent_rank(bid, s["service"]) > mine, f"{bid} idle longer than {aid}"
                s["state"], s["agent"], s["expires"] = "offered", aid, ev.expires_at
                a["session"] = sid
            elif isinstance(ev, OfferRevoked):
                s, a = self.sessions[ev.session_id], self.agents[ev.agent_id]
                assert s["state"] == "offered" and s["agent"] == ev.agent_id
                s["state"], s["agent"] = "queued", None
                a["session"] = None
                if ev.reason == "declined":
                    a["declined"] = True
                    cooldown = self.rules[s["service"]].get("decline_cooldown_s", 30)
                    if cooldown:
                        self.excl[(ev.agent_id, ev.session_id)] = now + cooldown
            elif isinstance(ev, SessionConnected):
                s = self.sessions.pop(ev.session_id)
                assert s["state"] == "offered" and s["agent"] == ev.agent_id
                self.agents[ev.agent_id]["session"] = ev.session_id
            elif isinstance(ev, SessionLeft):
                s = self.sessions.pop(ev.session_id)
                assert s["state"] == "queued"  # a revocation came first if it was offered
            elif isinstance(ev, CallEnded):
                assert self.agents[ev.agent_id]["session"] == ev.session_id
            else:  # pragma: no cover
                raise AssertionError(ev)

    def call(self, expected_error: str | None, fn, *args, **kw) -> None:
        snapshot = (self.e.agents(), [self.e.session(s) for s in self.all_sids])
        try:
            events = fn(*args, **kw)
        except RoutingError as err:
            assert expected_error is not None, f"unexpected {err}"
            assert err.code == expected_error, (err.code, expected_error)
            assert snapshot == (self.e.agents(), [self.e.session(s) for s in self.all_sids])
            return
        assert expected_error is None, f"expected {expected_error}"
        self.apply(events)

    # ------------------------------------------------------------------ rules
    @initialize(team=st.lists(st.tuples(skills_st, st.booleans()), min_size=4, max_size=4),
                waiting=st.lists(st.tuples(st.sampled_from(sorted(RULES)), st.integers(0, 9)), max_size=6))
    def staff_and_queue(self, team, waiting):
        for aid, (skills, available) in zip(AGENTS, team):
            self.login(aid, skills, available)
            self.clock.advance(1)
        for service, priority in waiting:
            self.enqueue(service, priority, 1)

    @rule(service=st.sampled_from(sorted(RULES)), priority=st.integers(0, 9), dup=st.integers(0, 9))
    def enqueue(self, service, priority, dup):
        if dup == 0 and self.sessions:
            sid = sorted(self.sessions)[0]
            self.call("duplicate_session", self.e.enqueue, sid, service, priority)
            return
        sid = f"s{self.n}"
        self.n += 1
        self.all_sids.append(sid)
        self.sessions[sid] = {"service": service, "priority": priority, "enq": self.now, "n": self.n,
                              "state": "queued", "agent": None, "away": False}
        self.call(None, self.e.enqueue, sid, service, priority)

    @rule(pick=st.integers(0, 1000))
    def abandon(self, pick):
        if not self.all_sids or pick % 3:  # customers leave less often than other things happen
            return
        sid = self.all_sids[pick // 3 % len(self.all_sids)]
        self.call(None if sid in self.sessions else "unknown_session", self.e.abandon, sid)

    @rule(pick=st.integers(0, 1000), back=st.booleans())
    def customer_away_or_back(self, pick, back):
        if not self.all_sids:
            return
        sid = self.all_sids[pick % len(self.all_sids)]
        s = self.sessions.get(sid)
        if s is None:
            self.call("unknown_session", self.e.customer_back if back else self.e.customer_away, sid)
            return
        was_offered = s["state"] == "offered"
        events = (self.e.customer_back if back else self.e.customer_away)(sid)
        if not back and not s["away"] and was_offered:  # the offer goes, the agent keeps its idle time
            assert isinstance(events[0], OfferRevoked) and events[0].reason == "customer_away", events
        if back == s["away"]:
            s["away"] = not back
        else:
            assert events == []  # idempotent
        self.apply(events)

    @rule(aid=st.sampled_from(AGENTS), skills=skills_st, available=st.booleans())
    def login(self, aid, skills, available):
        self.pending_skills = skills
        if aid in self.agents:
            self.agents[aid]["skills"] = skills  # re-login: new skills, same state
        self.call(None, self.e.agent_login, aid, skills, status="available" if available else "away")

    @rule(aid=st.sampled_from(AGENTS), skills=skills_st, service=st.sampled_from(sorted(RULES)))
    def login_in_a_call(self, aid, skills, service):
        """Back after a restart in a call that is still running: busy with it, whatever else waits."""
        if aid in self.agents:
            return
        self.pending_skills = skills
        sid = f"call{self.n}"
        self.n += 1
        self.call(None, self.e.agent_login, aid, skills, call=(sid, service, self.now - 30))
        assert self.agents[aid]["state"] == "busy"
        self.agents[aid]["session"] = sid

    @rule(aid=st.sampled_from(AGENTS), skills=skills_st)
    def update_skills(self, aid, skills):
        if aid in self.agents:
            self.agents[aid]["skills"] = skills
        self.call(None if aid in self.agents else "unknown_agent", self.e.update_agent_skills, aid, skills)

    @rule(service=st.sampled_from(sorted(RULES)), active=st.sampled_from([True, True, False]),
          aging=st.sampled_from([0, 1.0, 6.0]), cooldown=st.sampled_from([0, 20, 40]),
          timeout=st.sampled_from([10, 15]), wrapup=st.sampled_from([5, 30]), escalate=st.booleans())
    def change_service(self, service, active, aging, cooldown, timeout, wrapup, escalate):
        rules = {**RULES[service], "active": active, "aging_points_per_min": aging, "decline_cooldown_s": cooldown,
                 "offer_timeout_s": timeout, "wrapup_s": wrapup}
        if not escalate:
            rules["escalation"] = []
        if rules["active"] != self.rules[service].get("active", True):
            for sid, sess in self.sessions.items():  # switched off or on: re-reported even if unchanged
                if sess["service"] == service:
                    self.reported.pop(sid, None)
        self.rules[service] = rules
        self.call(None, self.e.add_service, rules)

    @rule(aid=st.sampled_from(AGENTS))
    def logout(self, aid):
        self.call(None if aid in self.agents else "unknown_agent", self.e.agent_logout, aid)

    @rule(aid=st.sampled_from(AGENTS), status=st.sampled_from(["available", "away"]))
    def set_status(self, aid, status):
        self.call(None if aid in self.agents else "unknown_agent", self.e.set_agent_status, aid, status)

    def _pick_agent(self, aid: str, pick: int, state: str) -> str:
        """Mostly an agent in the given state (if any), sometimes the drawn one."""
        candidates = sorted(k for k, a in self.agents.items() if a["state"] == state)
        return candidates[pick % len(candidates)] if candidates and pick % 4 else aid

    def _offer_target(self, aid: str, pick: int) -> tuple[str, str, str | None]:
        aid = self._pick_agent(aid, pick, "offered")
        a = self.agents.get(aid)
        if a is not None and a["state"] == "offered" and pick % 8:
            return aid, a["session"], None
        sid = self.all_sids[pick % len(self.all_sids)] if self.all_sids else "nope"
        if a is None:
            return aid, sid, "unknown_agent"
        if a["state"] == "offered" and a["session"] == sid:
            return aid, sid, None
        return aid, sid, ("not_offered" if sid in self.sessions else "unknown_session")

    @rule(aid=st.sampled_from(AGENTS), pick=st.integers(0, 1000))
    def accept(self, aid, pick):
        aid, sid, err = self._offer_target(aid, pick)
        self.call(err, self.e.accept, aid, sid)

    @rule(aid=st.sampled_from(AGENTS), pick=st.integers(0, 1000))
    def decline(self, aid, pick):
        aid, sid, err = self._offer_target(aid, pick)
        self.call(err, self.e.decline, aid, sid)

    @rule(aid=st.sampled_from(AGENTS), pick=st.integers(0, 1000))
    def end_call(self, aid, pick):
        aid = self._pick_agent(aid, pick, "busy")
        a = self.agents.get(aid)
        err = "unknown_agent" if a is None else (None if a["state"] == "busy" else "invalid_state")
        self.call(err, self.e.end_call, aid)

    @rule(aid=st.sampled_from(AGENTS), pick=st.integers(0, 1000))
    def wrapup_done(self, aid, pick):
        aid = self._pick_agent(aid, pick, "wrap_up")
        a = self.agents.get(aid)
        err = "unknown_agent" if a is None else (None if a["state"] == "wrap_up" else "invalid_state")
        self.call(err, self.e.wrapup_done, aid)

    @rule(dt=st.sampled_from([0.5, 1, 2, 5, 9, 10, 14, 15, 20, 30, 45, 61]))
    def advance(self, dt):
        deadline = self.e.next_deadline()
        self.clock.advance(dt)
        if deadline is not None and deadline > self.now:
            before = self.e.agents()
            assert self.e.tick() == [] and self.e.agents() == before  # nothing due before the deadline
            return
        self.call(None, self.e.tick)

    @rule()
    def report(self):
        for u in self.e.changed_positions():
            assert self.reported.get(u.session_id) != (u.position, u.estimated_wait_s)
            self.reported[u.session_id] = (u.position, u.estimated_wait_s)
        for sid in self.sessions:
            p = self.e.position(sid)
            assert self.reported[sid] == (p.position, p.estimated_wait_s), sid

    # ------------------------------------------------------------------ invariants
    @invariant()
    def work_conserving(self):
        for aid, a in self.agents.items():
            if a["state"] != "available":
                continue
            for sid, s in self.sessions.items():
                assert s["state"] != "queued" or not self.eligible(aid, sid), f"{aid} idles next to {sid}"

    @invariant()
    def engine_matches_model(self):
        assert {v.agent_id: v.state for v in self.e.agents()} == {k: a["state"] for k, a in self.agents.items()}
        for aid, a in self.agents.items():
            assert self.e.agent(aid).session_id == a["session"]
        for sid in self.all_sids:
            v = self.e.session(sid)
            s = self.sessions.get(sid)
            assert (v is None) == (s is None)
            if v is not None:
                assert (v.state, v.agent_id, v.away) == (s["state"], s["agent"], s["away"])
        for code in RULES:
            q = self.e.queue(code)
            assert sorted(q) == sorted(k for k, s in self.sessions.items() if s["service"] == code)
            assert [self.e.position(sid).position for sid in q] == list(range(1, len(q) + 1))
            # dispatch order: effective priority now, then the longer wait
            keys = [(-self.eff(sid), self.sessions[sid]["enq"], self.sessions[sid]["n"]) for sid in q]
            for k1, k2 in zip(keys, keys[1:]):
                assert k1[0] < k2[0] + 1e-9
                if abs(k1[0] - k2[0]) < 1e-9:
                    assert k1[1:] < k2[1:]
        stats = self.e.stats()
        by_state: dict[str, int] = {}
        for a in self.agents.values():
            by_state[a["state"]] = by_state.get(a["state"], 0) + 1
        assert {k: v for k, v in stats.agents_by_state.items() if v} == by_state
        assert stats.waiting_total == len(self.sessions)


RoutingMachine.TestCase.settings = settings(max_examples=int(os.environ.get("ROUTING_EXAMPLES", 150)), stateful_step_count=50, deadline=None)
TestRouting = RoutingMachine.TestCase


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(st.tuples(st.sampled_from(sorted(RULES)), st.integers(0, 9), st.sampled_from([0, 0, 1, 7, 60])),
                   max_size=25),
    gone=st.sets(st.integers(0, 24)),
    later=st.sampled_from([0, 5, 100, 1000]),
)
def test_restore_gives_back_the_same_order(items, gone, later):
    clock = FakeClock(1_800_000_000.0)
    e1 = RoutingEngine(clock, services=SERVICES)
    for i, (service, priority, dt) in enumerate(items):
        clock.advance(dt)
        e1.enqueue(f"s{i}", service, priority)
    for i in gone:
        if i < len(items):
            e1.abandon(f"s{i}")
    saved = e1.waiting_sessions()
    clock.advance(later)
    e2 = RoutingEngine(clock, services=SERVICES)
    e2.restore(saved)
    for code in RULES:
        assert e2.queue(code) == e1.queue(code)
    orders = []
    for e in (e1, e2):
        order = []
        events = e.agent_login("super", {"x": 5, "y": 5}, status="available")
        while True:
            made = [ev for ev in events if isinstance(ev, OfferMade)]
            if not made:
                break
            order.append(made[0].session_id)
            e.accept("super", made[0].session_id)
            e.end_call("super")
            events = e.wrapup_done("super")
        orders.append(order)
    assert orders[0] == orders[1]
    assert len(orders[0]) == len(saved)
