"""Signaling load: agents and customers over real WebSockets against one server process.

The server runs in its own process (`vbranch serve`, SQLite, demo data); this
process drives the clients. Agents stay available; each customer joins
(hello) at a fixed rate; the agent that gets the offer accepts it and ends the
call at once (a bench service with no mandatory checklist, wrap-up 0 s), so
agents come back. Join-to-offer is measured from the customer's hello to the
agent's receipt of the offer. Prints one JSON line, with the server's CPU and
the database commits per completed call (from the server's /metrics).

    python bench/signaling.py [--agents 500] [--customers 2000] [--rate 100]
                              [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

With ``--database-url`` on PostgreSQL a fresh database is created for the run
(and dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

SERVICE = {"code": "bench_desk", "name_zh": "压测", "name_en": "Bench desk", "required_skills": {"accounts": 1},
           "checklist": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(text: str, name: str) -> float:
    """The sum of a Prometheus counter's samples in a /metrics page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


async def server_metrics(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as h:
        return (await h.get("/metrics")).text


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_up(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as h:
        for _ in range(300):
            try:
                if (await h.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def prepare(base: str, api_key: str, agents: int, customers: int) -> tuple[list[str], list[str]]:
    # idle connections are dropped well before the server's keep-alive timeout (5 s), so a reused
    # connection is never one the server is closing at that moment
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(keepalive_expiry=1)) as h:
        admin = (await h.post("/api/v1/auth/login", json={"username": "admin", "password": "demo"})).json()["token"]
        auth = {"Authorization": f"Bearer {admin}"}
        (await h.put("/api/v1/admin/services/bench_desk", json=SERVICE, headers=auth)).raise_for_status()
        tokens = []
        sem = asyncio.Semaphore(8)

        async def make_agent(i: int) -> str:
            async with sem:
                name = f"bench{i:04d}"
                await h.post("/api/v1/admin/agents", headers=auth, json={
                    "username": name, "password": "bench-password", "display_name": name, "skills": {"accounts": 3}})
                r = await h.post("/api/v1/auth/login", json={"username": name, "password": "bench-password"})
                return r.json()["token"]

        tokens = await asyncio.gather(*(make_agent(i) for i in range(agents)))
        body = {"service": "bench_desk", "channel": "app", "customer": {"ref": "B", "name": "Bench"}}
        joins = []
        for _ in range(customers):
            r = await h.post("/api/v1/sessions", json=body, headers={"X-Api-Key": api_key})
            joins.append(r.json()["join_token"])
    return list(tokens), joins


async def run(args) -> dict:
    ws_base = args.base.replace("http", "ws") + "/ws?token="
    agent_tokens, join_tokens = await prepare(args.base, args.api_key, args.agents, args.customers)
    hello_at: dict[str, float] = {}
    offer_latency: list[float] = []
    offered: set[str] = set()
    done = asyncio.Event()
    agent_socks = []

    async def agent_loop(token: str) -> None:
        ws = await websockets.connect(ws_base + token, max_size=None)
        agent_socks.append(ws)
        await ws.send(json.dumps({"type": "hello"}))
        await ws.send(json.dumps({"type": "agent.status", "status": "available"}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "offer":
                sid = msg["session_id"]
                if sid not in offered:
                    offered.add(sid)
                    offer_latency.append(time.perf_counter() - hello_at[sid])
                    if len(offered) == len(join_tokens):
                        done.set()
                await ws.send(json.dumps({"type": "offer.accept", "session_id": sid}))
            elif msg["type"] == "session.connected":
                await ws.send(json.dumps({"type": "session.end", "session_id": msg["session_id"],
                                          "disposition": "bench"}))

    agents = [asyncio.create_task(agent_loop(t)) for t in agent_tokens]
    await asyncio.sleep(2 + args.agents / 200)
    customers = []

    async def customer(token: str) -> None:
        ws = await websockets.connect(ws_base + token, max_size=None)
        customers.append(ws)
        await ws.send(json.dumps({"type": "hello", "id": 1}))
        sent = time.perf_counter()
        welcome = json.loads(await ws.recv())
        hello_at[welcome["session_id"]] = sent
        async for _ in ws:  # keep reading queue updates and the end
            pass

    before = await server_metrics(args.base)
    start_cpu = cpu_seconds(args.server_pid)
    start_client_cpu = time.process_time()
    t0 = time.perf_counter()
    tasks = []
    for i, token in enumerate(join_tokens):
        tasks.append(asyncio.create_task(customer(token)))
        await asyncio.sleep(max(0.0, t0 + (i + 1) / args.rate - time.perf_counter()))
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - t0
    server_cpu = cpu_seconds(args.server_pid) - start_cpu
    client_cpu = time.process_time() - start_client_cpu
    await asyncio.sleep(2.0)  # the last calls end and complete
    after = await server_metrics(args.base)
    commits = metric(after, "vbranch_db_commits_total") - metric(before, "vbranch_db_commits_total")
    completed = (metric(after, 'vbranch_session_transitions_total{state="completed"}')
                 - metric(before, 'vbranch_session_transitions_total{state="completed"}'))
    journal_rows = metric(after, "vbranch_journal_rows_total") - metric(before, "vbranch_journal_rows_total")
    journal_commits = (metric(after, "vbranch_journal_commits_total")
                       - metric(before, "vbranch_journal_commits_total"))
    for t in agents + tasks:
        t.cancel()
    lat = sorted(x * 1000 for x in offer_latency)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    return {"bench": "signaling", "agents": args.agents, "customers": args.customers, "join_rate_per_s": args.rate,
            "customers_connected": len(customers), "offered": len(lat), "elapsed_s": round(elapsed, 2),
            "join_to_offer_ms": {"p50": round(q[49], 2), "p99": round(q[98], 2), "max": round(lat[-1], 2)},
            "server_cpu_cores": round(server_cpu / elapsed, 3),
            "client_cpu_cores": round(client_cpu / elapsed, 3),  # near 1.0: the bench itself is the limit
            "database": args.database, "calls_completed": int(completed),
            "db_commits_per_completed_call": round(commits / completed, 2) if completed else None,
            "journal_rows_per_commit": round(journal_rows / journal_commits, 1) if journal_commits else None,
            "target": {"join_to_offer_p99_ms": 50, "customers": 2000, "agents": 500},
            "target_met": len(lat) == args.customers and q[98] < 50}


@contextlib.contextmanager
def fresh_database(server_url: str | None):
    """None for SQLite; for PostgreSQL a new database on that server, dropped afterwards."""
    if not server_url:
        yield None
        return
    import uuid

    import psycopg

    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"vbranch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--database-url", default=None, help="PostgreSQL server URL (a fresh database is made)")
    args = p.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.database_url) as db_url:
        env = {**os.environ, "VBRANCH_DATA_DIR": tmp, "VBRANCH_WRAPUP_S": "0", "VBRANCH_LOG_LEVEL": "warning",
               "VBRANCH_WS_RATE_PER_S": "1000", "VBRANCH_SECRET_KEY": "bench-secret-" + "x" * 32}
        if db_url:
            env["VBRANCH_DATABASE_URL"] = db_url
        args.database = "postgresql" if db_url else "sqlite"
        server_log = open(Path(tmp) / "server.log", "w")  # a pipe nobody reads would stall the server
        server = subprocess.Popen([sys.executable, "-m", "vbranch.cli", "serve", "--demo", "--port", str(port)],
                                  env=env, stdout=server_log, stderr=subprocess.STDOUT, text=True)
        try:
            args.base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_up(args.base))
            from vbranch.demo import demo_api_key

            args.api_key = demo_api_key(env["VBRANCH_SECRET_KEY"])
            args.server_pid = server.pid
            print(json.dumps(asyncio.run(run(args))))
        finally:
            server.terminate()
            server.wait(10)
            server_log.close()
            problems = [line for line in (Path(tmp) / "server.log").read_text().splitlines()
                        if "ERROR" in line or "Traceback" in line]
            if problems:
                print(f"server log: {len(problems)} error lines, first: {problems[0][:300]}", file=sys.stderr)


if __name__ == "__main__":
    main()
