"""Routing engine benchmark: prints ONE JSON line.

    python bench/routing.py [--sessions 10000] [--agents 2000] [--decisions 20000] [--seed 1]

Backlog scenario (the target): 10,000 sessions wait across the 5 demo services
(enqueued over the last 10 minutes, so they sit in different escalation rings)
and 2,000 agents with mixed skills are logged in. Agents come free one at a time
(away -> available, or wrap-up done), and each time the engine picks the session
for them among the 10,000: that call is one *agent_to_session* decision. The
agent accepts and ends the call (not timed as decisions), and a new session
arrives to keep the backlog at 10,000: that enqueue is one *session_to_agent*
decision (usually no agent is free). The simulated clock moves 5 ms per cycle,
so escalation rings and wrap-up timeouts happen during the run (tick() is called
when next_deadline() is due, and timed as well).

Idle-agents scenario: the same 2,000 agents all available and an empty queue;
sessions arrive one at a time and the engine picks the longest-idle eligible
agent (*session_to_agent* with a real choice).

decisions_per_s = decisions / time spent in the decision calls;
sustained_decisions_per_s = decisions / wall time of the whole loop, including
accept, end_call and tick.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vbranch.domain.routing import AgentState, OfferMade, RoutingEngine, ServiceRules  # noqa: E402

SERVICES = [
    ServiceRules.from_dict({
        "code": "loan_prescreen", "required_skills": {"loan": 3, "mandarin": 2},
        "escalation": [{"after_s": 0, "min_proficiency": 4}, {"after_s": 60, "min_proficiency": 2},
                       {"after_s": 180, "min_proficiency": 1}],
    }),
    ServiceRules.from_dict({
        "code": "f2f_signing", "required_skills": {"signing": 2, "mandarin": 2},
        "escalation": [{"after_s": 0, "min_proficiency": 3}, {"after_s": 90, "min_proficiency": 1}],
    }),
    ServiceRules.from_dict({
        "code": "risk_assessment", "required_skills": {"risk": 3},
        "escalation": [{"after_s": 0, "min_proficiency": 4}, {"after_s": 60, "min_proficiency": 3},
                       {"after_s": 180, "min_proficiency": 1}],
    }),
    ServiceRules.from_dict({"code": "account_opening", "required_skills": {"accounts": 1}}),
    ServiceRules.from_dict({
        "code": "private_banking", "required_skills": {"wealth": 4, "english": 3},
        "escalation": [{"after_s": 0, "min_proficiency": 5}, {"after_s": 120, "min_proficiency": 4},
                       {"after_s": 300, "min_proficiency": 3}],
        "aging_points_per_min": 0.5,
    }),
]
PRODUCT_SKILLS = ["loan", "signing", "risk", "accounts", "wealth"]
SERVICE_WEIGHTS = [30, 20, 20, 25, 5]


class BenchClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


def make_agents(rng: random.Random, n: int) -> list[tuple[str, dict[str, int]]]:
    out = []
    for i in range(n):
        skills = {"mandarin": rng.randint(1, 5)}
        if rng.random() < 0.4:
            skills["english"] = rng.randint(1, 5)
        for skill in rng.sample(PRODUCT_SKILLS, rng.choice([1, 2, 2, 3])):
            skills[skill] = rng.randint(1, 5)
        out.append((f"agent-{i}", skills))
    return out


def pct(values: list[int], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] / 1e6  # ns -> ms


def summary(lat: list[int]) -> dict[str, float]:
    return {"n": len(lat), "p50_ms": round(pct(lat, 50), 4), "p99_ms": round(pct(lat, 99), 4),
            "max_ms": round(max(lat) / 1e6, 4) if lat else 0.0}


def backlog(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    clock = BenchClock(1_800_000_000.0)
    engine = RoutingEngine(clock, services=SERVICES)
    codes = [s.code for s in SERVICES]
    seq = 0
    start = clock.t - 600.0
    for i in range(args.sessions):  # enqueued over the last 10 minutes
        engine.enqueue(f"s{seq}", rng.choices(codes, SERVICE_WEIGHTS)[0], rng.choice([0, 0, 0, 1, 2, 5, 9]),
                       enqueued_at=start + 600.0 * i / args.sessions)
        seq += 1
    agents = make_agents(rng, args.agents)
    for aid, skills in agents:
        engine.agent_login(aid, skills)  # away
    free = deque(aid for aid, _ in agents)
    rng.shuffle(free)
    a2s: list[int] = []
    s2a: list[int] = []
    ticks: list[int] = []
    offers = 0
    perf = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    wall0 = perf()
    for _ in range(args.decisions):
        clock.t += 0.005
        deadline = engine.next_deadline()
        if deadline is not None and deadline <= clock.t:
            t0 = perf()
            ev = engine.tick()
            ticks.append(perf() - t0)
            for e in ev:
                if type(e) is OfferMade:
                    offers += 1
                    engine.accept(e.agent_id, e.session_id)
                    engine.end_call(e.agent_id)
                    free.append(e.agent_id)
        aid = free.popleft()
        st = engine.agent(aid).state
        t0 = perf()
        if st is AgentState.WRAP_UP:
            ev = engine.wrapup_done(aid)
        elif st is AgentState.AWAY:
            ev = engine.set_agent_status(aid, "available")
        else:  # available with nothing eligible, or already re-offered after a wrap-up timeout
            ev = None
        if ev is not None:
            a2s.append(perf() - t0)
        for e in ev or ():
            if type(e) is OfferMade:
                offers += 1
                engine.accept(e.agent_id, e.session_id)
                engine.end_call(e.agent_id)
                free.append(e.agent_id)
        if engine.agent(aid).state is AgentState.AVAILABLE:
            free.append(aid)  # nothing eligible for it right now; try again later
        while len(engine._sessions) < args.sessions:  # keep the backlog
            svc = rng.choices(codes, SERVICE_WEIGHTS)[0]
            t0 = perf()
            ev = engine.enqueue(f"s{seq}", svc, rng.choice([0, 0, 0, 1, 2, 5, 9]))
            s2a.append(perf() - t0)
            seq += 1
            for e in ev:
                if type(e) is OfferMade:
                    offers += 1
                    engine.accept(e.agent_id, e.session_id)
                    engine.end_call(e.agent_id)
                    free.append(e.agent_id)
    wall = perf() - wall0
    gc.unfreeze()
    waiting = len(engine._sessions)
    t0 = perf()
    engine.changed_positions()
    first_positions_ms = (perf() - t0) / 1e6
    decisions = a2s + s2a + ticks
    return {
        "waiting_sessions_end": waiting,
        "offers": offers,
        "decisions": len(decisions),
        "decisions_per_s": round(len(decisions) / (sum(decisions) / 1e9)),
        "sustained_decisions_per_s": round(len(decisions) / (wall / 1e9)),
        "p50_ms": round(pct(decisions, 50), 4),
        "p99_ms": round(pct(decisions, 99), 4),
        "agent_to_session": summary(a2s),
        "session_to_agent": summary(s2a),
        "tick": summary(ticks),
        "simulated_s": round(args.decisions * 0.005, 1),
        "changed_positions_all_ms": round(first_positions_ms, 2),
    }


def idle_agents(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed + 1)
    clock = BenchClock(1_800_000_000.0)
    engine = RoutingEngine(clock, services=SERVICES)
    codes = [s.code for s in SERVICES]
    for aid, skills in make_agents(rng, args.agents):
        engine.agent_login(aid, skills, status="available")
        clock.t += 0.01
    lat: list[int] = []
    offers = 0
    perf = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    wall0 = perf()
    for i in range(args.decisions // 2):
        clock.t += 0.005
        t0 = perf()
        ev = engine.enqueue(f"n{i}", rng.choices(codes, SERVICE_WEIGHTS)[0], rng.choice([0, 0, 1, 5]))
        lat.append(perf() - t0)
        for e in ev:
            if type(e) is OfferMade:
                offers += 1
                engine.accept(e.agent_id, e.session_id)
                engine.end_call(e.agent_id)
                engine.wrapup_done(e.agent_id)
    wall = perf() - wall0
    gc.unfreeze()
    return {"decisions": len(lat), "offers": offers, "waiting_sessions_end": len(engine._sessions),
            "decisions_per_s": round(len(lat) / (sum(lat) / 1e9)),
            "sustained_decisions_per_s": round(len(lat) / (wall / 1e9)), **summary(lat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--agents", type=int, default=2_000)
    ap.add_argument("--decisions", type=int, default=20_000, help="agent cycles in the backlog scenario")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    b = backlog(args)
    idle = idle_agents(args)
    print(json.dumps({
        "bench": "routing",
        "waiting_sessions": args.sessions,
        "agents": args.agents,
        "services": len(SERVICES),
        "decisions": b["decisions"],
        "decisions_per_s": b["decisions_per_s"],
        "sustained_decisions_per_s": b["sustained_decisions_per_s"],
        "p50_ms": b["p50_ms"],
        "p99_ms": b["p99_ms"],
        "target": {"p99_ms": 1.0, "decisions_per_s": 20_000},
        "target_met": b["p99_ms"] < 1.0 and b["sustained_decisions_per_s"] > 20_000
        and idle["p99_ms"] < 1.0,
        "backlog": b,
        "idle_agents": idle,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
