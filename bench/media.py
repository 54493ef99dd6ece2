"""Media hub benchmark: server CPU per recorded 1:1 call, passthrough vs stock aiortc.

    python bench/media.py [--calls 20] [--stock-calls 2] [--seconds 20]

Runs the hub in its own process (``--role server``) and the callers in one or
more client processes (``--role client``); the parent coordinates and reads the
server's CPU time from /proc/<pid>/stat around a steady measurement window.
Each call is two aiortc peers (customer, agent) sending a pre-encoded 640x480
15 fps VP8 clip (~600 kbit/s) and Opus, looped, and counting received frames
without decoding, so clients cost little.

The passthrough hub (encoded-frame forwarding + recording) runs ``--calls``
calls; the stock path (aiortc MediaRelay + MediaRecorder: decode + re-encode)
runs ``--stock-calls`` (default 1: on this 2-core machine one stock call
already needs about a core and falls behind); CPU is normalised per call, so the
ratio is a lower bound while the stock path cannot keep up (see its drain_s). Prints one JSON line per mode and a final comparison line.

Frame loss = video frames sent into the hub during the window that did not
reach the other party (and, for passthrough, that did not reach the recording).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields after the command: state(0) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------- server
async def run_server(mode: str, recordings: str) -> None:
    from recordings.storage import LocalDirStorage
    from vbranch.media.hub import MediaHub

    hub = MediaHub(LocalDirStorage(recordings), ice_servers=[], mode=mode)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            op = request["op"]
            if op == "offer":
                reply: Any = {"sdp": await hub.handle_offer(request["session"], request["party"], request["sdp"])}
            elif op == "stats":
                reply = {s: hub.stats(s) for s in request["sessions"] if s in hub.sessions()}

            elif op == "end":
                results = await hub.end_session(request["session"])
                reply = {"results": [r.as_dict() for r in results]}
            else:
                reply = {"error": f"unknown op {op}"}
        except Exception as exc:  # noqa: BLE001 - report to the client
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        writer.write((json.dumps(reply) + "\n").encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 22)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"ready": True, "port": port, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    # run until the parent closes our stdin
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await hub.close()


# --------------------------------------------------------------------- client
async def rpc(port: int, request: dict[str, Any]) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    reply = json.loads(await reader.readline())
    writer.close()
    if isinstance(reply, dict) and "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


async def run_client(port: int, clip_path: str, calls: int, prefix: str) -> None:
    from vbranch.media.synthetic import ClientPeer, PreEncodedAudioTrack, PreEncodedVideoTrack

    with open(clip_path, "rb") as fh:
        clip = pickle.load(fh)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    sessions: dict[str, dict[str, ClientPeer]] = {}
    gate = asyncio.Semaphore(4)


    async def start(i: int) -> None:
        sid = f"{prefix}-{i}"
        peers = {
            party: ClientPeer(video=PreEncodedVideoTrack(clip.video, clip.fps), audio=PreEncodedAudioTrack(clip.audio))
            for party in ("customer", "agent")
        }
        sessions[sid] = peers
        async with gate:
            for party, peer in peers.items():
                await peer.connect(
                    lambda sdp, party=party: _offer(port, sid, party, sdp)
                )
        for peer in peers.values():
            await peer.wait_frames("video", 10, timeout=60)

    await asyncio.gather(*(start(i) for i in range(calls)))
    print(json.dumps({"ready": True}), flush=True)

    def snapshot() -> dict[str, Any]:
        return {
            sid: {
                party: {
                    "video_sent": p.video_track.sent,
                    "audio_sent": p.audio_track.sent,
                    "video_recv": p.received["video"].frames,
                    "audio_recv": p.received["audio"].frames,
                }
                for party, p in peers.items()
            }
            for sid, peers in sessions.items()
        }

    async def server_recorded() -> dict[str, Any]:
        stats = await rpc(port, {"op": "stats", "sessions": list(sessions)})
        return {
            sid: {
                party: (s[party]["recording"] or {}).get("video_frames", 0) if s[party]["recording"] else None
                for party in ("customer", "agent")
            }
            for sid, s in stats.items()
        }

    def pause(paused: bool) -> None:
        for peers in sessions.values():
            for p in peers.values():
                p.video_track.paused = paused
                p.audio_track.paused = paused

    # Counters are read with the senders paused and the pipes drained, so a
    # frame sent in the window either arrived by the end or was lost (a frame
    # that is merely late is not counted as lost).
    await stdin.readline()  # GO
    pause(True)
    await asyncio.sleep(1.0)
    start_counts, start_rec = snapshot(), await server_recorded()
    pause(False)
    print(json.dumps({"started": True}), flush=True)
    await stdin.readline()  # STOP
    pause(True)
    # drain: wait until nothing more arrives (a backlog means the hub lagged)
    stopped = time.monotonic()
    end_counts, end_rec = snapshot(), await server_recorded()
    quiet_since = time.monotonic()
    while time.monotonic() - stopped < 20.0:
        await asyncio.sleep(0.25)
        counts, rec = snapshot(), await server_recorded()
        if counts != end_counts or rec != end_rec:
            end_counts, end_rec, quiet_since = counts, rec, time.monotonic()
        elif time.monotonic() - quiet_since >= 1.0:
            break
    drain_s = quiet_since - stopped
    results = []
    for sid in sessions:
        results.extend((await rpc(port, {"op": "end", "session": sid}))["results"])
    totals_sent = {
        (sid, party): p.video_track.sent for sid, peers in sessions.items() for party, p in peers.items()
    }
    await asyncio.gather(*(p.close() for peers in sessions.values() for p in peers.values()))

    video_sent = video_lost = audio_sent = audio_lost = rec_sent = rec_lost = 0
    for sid, peers in sessions.items():
        for party in peers:
            other = "agent" if party == "customer" else "customer"
            sent = end_counts[sid][party]["video_sent"] - start_counts[sid][party]["video_sent"]
            got = end_counts[sid][other]["video_recv"] - start_counts[sid][other]["video_recv"]
            video_sent += sent
            video_lost += max(0, sent - got)
            a_sent = end_counts[sid][party]["audio_sent"] - start_counts[sid][party]["audio_sent"]
            a_got = end_counts[sid][other]["audio_recv"] - start_counts[sid][other]["audio_recv"]
            audio_sent += a_sent
            audio_lost += max(0, a_sent - a_got)
            r0, r1 = start_rec.get(sid, {}).get(party), end_rec.get(sid, {}).get(party)
            if r0 is not None and r1 is not None:
                rec_sent += sent
                rec_lost += max(0, sent - (r1 - r0))
    if os.environ.get("BENCH_MEDIA_DEBUG"):
        for sid, peers in sessions.items():
            for party in peers:
                other = "agent" if party == "customer" else "customer"
                sent = end_counts[sid][party]["video_sent"] - start_counts[sid][party]["video_sent"]
                got = end_counts[sid][other]["video_recv"] - start_counts[sid][other]["video_recv"]
                r0, r1 = start_rec.get(sid, {}).get(party), end_rec.get(sid, {}).get(party)
                print(f"# {sid} {party}: sent {sent} forwarded {got} recorded {r1 - r0 if r0 is not None else None}"
                      f" kf_requests {peers[party].video_track.keyframe_requests}", file=sys.stderr)
    recorded_total = sum(r["video_frames"] for r in results)
    print(
        json.dumps(
            {
                "video_sent": video_sent,
                "video_lost": video_lost,
                "audio_sent": audio_sent,
                "audio_lost": audio_lost,
                "recording_window_sent": rec_sent,
                "recording_window_lost": rec_lost,
                "recordings": len(results),
                "recorded_video_frames": recorded_total,
                "sent_video_frames_total": sum(totals_sent.values()),
                "recording_bytes": sum(r["size_bytes"] for r in results),
                "drain_s": round(drain_s, 2),
            }
        ),
        flush=True,
    )


async def _offer(port: int, sid: str, party: str, sdp: str) -> str:
    return (await rpc(port, {"op": "offer", "session": sid, "party": party, "sdp": sdp}))["sdp"]


# --------------------------------------------------------------------- parent
def read_json(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    import select

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("a bench process said nothing in time")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a bench process exited ({proc.wait()})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)


def run_mode(
    mode: str, calls: int, seconds: float, client_procs: int, clip_path: str, workdir: Path, loop: str
) -> dict[str, Any]:
    recordings = workdir / f"rec-{mode}"
    script = str(Path(__file__).resolve())
    profile = os.environ.get("BENCH_MEDIA_PROFILE")  # a path: cProfile the server into it
    server = subprocess.Popen(
        [sys.executable]
        + (["-m", "cProfile", "-o", f"{profile}.{mode}"] if profile else [])
        + [script, "--role", "server", "--mode", mode, "--recordings", str(recordings), "--loop", loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    clients: list[subprocess.Popen] = []
    try:
        info = read_json(server, 60)
        port, pid = info["port"], info["pid"]
        procs = max(1, min(client_procs, calls))
        shares = [calls // procs + (1 if i < calls % procs else 0) for i in range(procs)]
        for i, share in enumerate(shares):
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable, script, "--role", "client", "--port", str(port),
                        "--clip", clip_path, "--calls", str(share), "--prefix", f"{mode}-{i}", "--loop", loop,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for c in clients:
            read_json(c, 120)
        time.sleep(2.0)  # settle: start-up key frames, jitter buffers
        for c in clients:
            c.stdin.write("GO\n")
            c.stdin.flush()
        for c in clients:
            read_json(c, 60)  # started: counters taken, sending again
        client_cpu0 = sum(cpu_seconds(c.pid) for c in clients)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        client_cpu1 = sum(cpu_seconds(c.pid) for c in clients)
        rss = rss_mb(pid)
        for c in clients:
            c.stdin.write("STOP\n")
            c.stdin.flush()
        reports = [read_json(c, 120) for c in clients]
        for c in clients:
            c.wait(30)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        if server.poll() is None:
            server.stdin.close()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    total = {k: sum(r[k] for r in reports) for k in reports[0] if k != "drain_s"}
    drain_s = max(r["drain_s"] for r in reports)
    elapsed = t1 - t0
    server_cores = (cpu1 - cpu0) / elapsed
    result = {
        "bench": "media",
        "mode": mode,
        "calls": calls,
        "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "server_cores": round(server_cores, 3),
        "server_cpu_per_call": round(server_cores / calls, 4),
        "server_rss_mb": round(rss, 1),
        "client_cores": round((client_cpu1 - client_cpu0) / elapsed, 3),
        "video_frames_sent": total["video_sent"],
        "video_frames_lost": total["video_lost"],
        "video_loss_pct": round(100 * total["video_lost"] / max(1, total["video_sent"]), 3),
        "audio_loss_pct": round(100 * total["audio_lost"] / max(1, total["audio_sent"]), 3),
        "recordings": total["recordings"],
        "recorded_video_frames": total["recorded_video_frames"],
        "recording_mb": round(total["recording_bytes"] / 1e6, 1),
        # time for the last frames to arrive after the senders paused: ~0 when the
        # hub keeps up, grows when it (or the machine) falls behind
        "drain_s": drain_s,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if total["recording_window_sent"]:
        result["recording_loss_pct"] = round(
            100 * total["recording_window_lost"] / total["recording_window_sent"], 3
        )
    shutil.rmtree(recordings, ignore_errors=True)
    return result


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("calls", nargs="?", type=int, default=None, help="concurrent passthrough calls (default 20)")
    parser.add_argument("--calls", dest="calls_opt", type=int, default=20)
    parser.add_argument(
        "--stock-calls", type=int, default=1, help="concurrent calls through the stock path (one already needs ~1 core)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per mode")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--modes", default="passthrough,stock")
    parser.add_argument("--role", choices=["parent", "server", "client"], default="parent")
    parser.add_argument("--mode", default="passthrough")
    parser.add_argument("--recordings")
    parser.add_argument("--port", type=int)
    parser.add_argument("--clip")
    parser.add_argument("--prefix", default="c")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop for server and clients (uvicorn runs the app on uvloop when installed)",
    )
    args = parser.parse_args()

    if args.role in ("server", "client"):
        if args.loop == "uvloop":
            import uvloop

            uvloop.install()
        if args.role == "server":
            asyncio.run(run_server(args.mode, args.recordings))
        else:
            asyncio.run(run_client(args.port, args.clip, args.calls_opt, args.prefix))
        return

    from vbranch.media.synthetic import make_clip

    calls = args.calls if args.calls is not None else args.calls_opt
    workdir = Path(tempfile.mkdtemp(prefix="vbranch-bench-media-"))
    try:
        clip = make_clip(640, 480, 15, 4.0, 500_000)
        clip_path = workdir / "clip.pickle"
        with open(clip_path, "wb") as fh:
            pickle.dump(clip, fh)
        kbps = sum(len(d) for d, _ in clip.video) * 8 / (len(clip.video) / clip.fps) / 1000
        results: dict[str, dict[str, Any]] = {}
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            n = calls if mode == "passthrough" else args.stock_calls
            results[mode] = run_mode(mode, n, args.seconds, args.client_procs, str(clip_path), workdir, args.loop)
            results[mode]["loop"] = args.loop
            results[mode]["clip"] = f"{clip.width}x{clip.height}@{clip.fps} vp8 {kbps:.0f}kbps + opus"
            print(json.dumps(results[mode]), flush=True)
        if "passthrough" in results and "stock" in results:
            fast, slow = results["passthrough"], results["stock"]
            ratio = slow["server_cpu_per_call"] / max(1e-6, fast["server_cpu_per_call"])
            print(
                json.dumps(
                    {
                        "bench": "media",
                        "metric": "server_cpu_per_recorded_call",
                        "passthrough": fast["server_cpu_per_call"],
                        "stock": slow["server_cpu_per_call"],
                        "ratio": round(ratio, 1),
                        "target_ratio": 15,
                        "ratio_ok": ratio >= 15,
                        "passthrough_calls": fast["calls"],
                        "passthrough_video_loss_pct": fast["video_loss_pct"],
                        "passthrough_recording_loss_pct": fast.get("recording_loss_pct"),
                        "passthrough_drain_s": fast["drain_s"],
                        "stock_video_loss_pct": slow["video_loss_pct"],
                        "stock_drain_s": slow["drain_s"],
                        "loss_ok": fast["video_loss_pct"] < 1 and (fast.get("recording_loss_pct") or 0) < 1,
                        "realtime_ok": fast["drain_s"] < 1.0,
                    }
                ),
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
