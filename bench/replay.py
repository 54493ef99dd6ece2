"""Replay of a 30-minute recording in Chromium through the REST media URL: first frame and seeks.

    python bench/replay.py [--duration 1800] [--reps 5] [--clip-s 10] [--seeks 1500,754,1199.9] [--codecs vp8,h264]

Target: in Debian's headless Chromium, a <video> pointed at
``GET /api/v1/recordings/{id}/media?token=...`` shows its first frame, and a
seek into the recording shows the frame at the new position, under 1 s each,
for VP8/Opus WebM and for H.264/Opus Matroska (served as an MP4 stream copy
made on the first replay; that first replay is reported on its own).

Set-up (not timed): a real server process (``vbranch serve --demo``, SQLite,
temporary data dir, free port); a session made through the REST API; then, for
that session, a ``--duration`` recording per codec made by the real
:class:`PartyRecorder` (VP8 for the customer, H.264 for the agent) from a short
pre-encoded 640x480 15 fps clip (~600-700 kbit/s in the file) and a 32 kbit/s Opus clip, looped
and pushed with synthetic arrival times (no real-time wait), so the files have
the recorder's Duration and Cues. The files go in the server's recordings folder
and their ``recording`` rows in its database (the fields vbranch/calls/media.py writes at
the end of a call). The reviewer (``reviewer``/``demo``) lists the session's
recordings and gets each ``media_url``.

The clip starts with its only key frame, so a looped clip has a key frame every
``--clip-s`` seconds (WebRTC encoders send one only on request, or every few
thousand frames; the recorder asks for one only at its start). A seek decodes
from the key frame before the target, so seek times grow with ``--clip-s``. The
default seeks: 25:00 (a key-frame time with the default 10 s clip; Chromium
seeks a little earlier for Opus pre-roll, so this decodes the previous 10 s),
12:34, and one frame-time before a key frame (19:59.9).

Measured per codec, ``--reps`` times, each in a fresh browser context: the time
from setting ``video.src`` until a frame is presented (``requestVideoFrameCallback``)
and ``loadeddata`` fired, and for each seek the time from setting
``currentTime`` until ``seeked`` fired and the frame at the new position was
presented. Media requests and bytes come from the DevTools protocol. The H.264
recording's first replay (which makes the MP4 copy, a stream copy of the whole
file) is measured separately, with the first request's time to the response
headers. A plain HTTP range read with httpx (keep-alive) gives the server's floor.
Prints one JSON line: ``target_met`` needs every replay under target, the H.264
first one included; ``target_met_after_mp4_copy`` leaves that one out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
BASE_ARGS = [  # tests/browser/conftest.py
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
TARGET_MS = 1000
# encoder bit rates giving ~600 kbit/s of video in the file (libvpx's realtime mode overshoots on the pattern)
VIDEO_BITRATE = {"vp8": 400_000, "h264": 540_000}
PARTY = {"vp8": "customer", "h264": "agent"}

PAGE = """<!doctype html>
<html><body>
<script>
const timeout = (ms, what) => new Promise((_, fail) => setTimeout(() => fail(new Error('timeout: ' + what)), ms));
let v = null, failed = null;
function frame() {  // the next frame presented, and when JS learnt of it
  return new Promise(ok => v.requestVideoFrameCallback((now, md) => ok({at: performance.now(), media: md.mediaTime})));
}
function event(name) {
  return new Promise(ok => v.addEventListener(name, () => ok(performance.now()), {once: true}));
}
window.load = async (src) => {
  if (v) { v.removeAttribute('src'); v.load(); v.remove(); }
  v = document.createElement('video');
  v.muted = true; v.preload = 'auto'; v.width = 320;
  document.body.appendChild(v);
  failed = new Promise((_, fail) => v.addEventListener('error', () =>
    fail(new Error('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message))), {once: true}));
  const f = frame(), meta = event('loadedmetadata'), data = event('loadeddata');
  const t0 = performance.now();
  v.src = src;
  const [fr, tm, td] = await Promise.race([Promise.all([f, meta, data]), failed, timeout(30000, 'first frame')]);
  return {first_frame_ms: Math.max(fr.at, td) - t0, frame_callback_ms: fr.at - t0, metadata_ms: tm - t0,
          loadeddata_ms: td - t0, frame_media_time: fr.media, duration: v.duration, width: v.videoWidth,
          height: v.videoHeight, ready_state: v.readyState};
};
window.seek = async (to) => {
  const f = frame(), s = event('seeked');
  const t0 = performance.now();
  v.currentTime = to;
  const [fr, ts] = await Promise.race([Promise.all([f, s]), failed, timeout(30000, 'seek to ' + to)]);
  return {to, seek_ms: Math.max(fr.at, ts) - t0, seeked_ms: ts - t0, frame_callback_ms: fr.at - t0,
          frame_media_time: fr.media, current_time: v.currentTime, ready_state: v.readyState};
};
</script>
</body></html>
"""


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(base: str, server: subprocess.Popen) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError("server exited: " + (server.stdout.read() if server.stdout else ""))
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)} if values else {}


# --------------------------------------------------------- the recordings
def make_recording(codec: str, storage_root: Path, session_id: str, seconds: float, clip_s: float) -> dict[str, Any]:
    """A ``seconds`` long recording by the real PartyRecorder from a looped clip (synthetic arrival times)."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from recordings.storage import LocalDirStorage
    from vbranch.clock import SystemClock
    from vbranch.media.forwarding import EncodedFrame
    from vbranch.media.recorder import PartyRecorder
    from vbranch.media.synthetic import encode_h264_clip, encode_opus_clip, encode_vp8_clip

    fps = 15
    t0 = time.perf_counter()
    if codec == "vp8":
        video = encode_vp8_clip(640, 480, fps, clip_s, VIDEO_BITRATE[codec])
        vparams = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    else:
        video = encode_h264_clip(640, 480, fps, clip_s, VIDEO_BITRATE[codec])
        vparams = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                                        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"})
    audio = encode_opus_clip(4.0)
    aparams = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    encode_s = time.perf_counter() - t0

    recorder = PartyRecorder(session_id=session_id, party=PARTY[codec], storage=LocalDirStorage(storage_root),
                             clock=SystemClock(), expected_kinds={"audio", "video"})
    # arrival times from now on: the recorder anchors pts on them and waits (header_wait_s, from the first
    # arrival) for both streams before it creates the file; arrivals in the past would make it start
    # video-only at once and drop the audio
    base = time.monotonic()
    n_video, n_audio = int(seconds * fps), int(seconds * 50)
    i = j = 0
    t1 = time.perf_counter()
    while i < n_video or j < n_audio:  # interleaved by arrival time, as on a call
        tv = i / fps if i < n_video else float("inf")
        ta = j * 0.02 + 0.005 if j < n_audio else float("inf")
        if tv <= ta:
            data, key = video[i % len(video)]
            frame = EncodedFrame("video", vparams, codec, data, i * 90000 // fps, key, base + tv, 1)
            i += 1
        else:
            frame = EncodedFrame("audio", aparams, "opus", audio[j % len(audio)], j * 960, True, base + ta, 1)
            j += 1
        recorder.push(frame)
    result = asyncio.run(recorder.close())
    if result is None or recorder.failed or result.audio_codec != "opus" or result.video_codec != codec:
        raise RuntimeError(f"recording {codec} failed: {recorder.failed} {result}")
    return {"result": result, "clip_encode_s": round(encode_s, 2), "write_s": round(time.perf_counter() - t1, 2),
            "video_frames": result.video_frames, "audio_frames": result.audio_frames,
            "key_frame_interval_s": len(video) / fps}


def register(db_path: Path, session_id: str, result: Any) -> None:
    """The recording row vbranch/calls/media.py writes when a call ends, into the server's database."""
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from vbranch.db.models import Recording

    engine = create_engine(f"sqlite:///{db_path}", connect_args={"timeout": 30})
    try:
        with Session(engine) as db:
            db.add(Recording(session_id=session_id, party=result.party, storage_key=result.storage_key,
                             container=result.container, video_codec=result.video_codec,
                             audio_codec=result.audio_codec, started_at=result.started_at,
                             duration_s=result.duration_s, size_bytes=result.size_bytes, sha256=result.sha256,
                             finalised_at=result.finalised_at))
            db.commit()
    finally:
        engine.dispose()


# ------------------------------------------------------------- measuring
class MediaRequests:
    """Media requests and bytes seen by the page, from the DevTools protocol."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.bytes = 0

    async def attach(self, page: Any) -> None:
        cdp = await page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.dataReceived", self._data)
        await cdp.send("Network.enable")

    def _sent(self, e: dict[str, Any]) -> None:
        if "/media?" in e["request"]["url"]:
            headers = {k.lower(): v for k, v in e["request"].get("headers", {}).items()}
            self.requests[e["requestId"]] = {"range": headers.get("range"), "sent": e["timestamp"], "bytes": 0}

    def _response(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e["requestId"])
        if r is not None:
            r["status"] = e["response"]["status"]
            r["headers_s"] = e["timestamp"] - r["sent"]
            r["content_range"] = {k.lower(): v for k, v in e["response"]["headers"].items()}.get("content-range")

    def _data(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e["requestId"])
        if r is not None:
            r["bytes"] += e["dataLength"]
            self.bytes += e["dataLength"]

    def mark(self) -> tuple[int, int]:
        return len(self.requests), self.bytes


async def replay_once(browser: Any, base: str, url: str, seeks: list[float]) -> dict[str, Any]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(base + "/healthz")  # the server's origin, like the console
        await page.set_content(PAGE)
        net = MediaRequests()
        await net.attach(page)
        out = await page.evaluate("(src) => window.load(src)", base + url)
        await asyncio.sleep(0.05)  # let the protocol events of that phase arrive (not timed)
        n, b = net.mark()
        out["requests"], out["bytes"] = n, b
        out["seeks"] = []
        for to in seeks:
            s = await page.evaluate("(t) => window.seek(t)", to)
            await asyncio.sleep(0.05)
            n2, b2 = net.mark()
            s["requests"], s["bytes"] = n2 - n, b2 - b
            n, b = n2, b2
            out["seeks"].append(s)
        out["media_requests"] = list(net.requests.values())
        return out
    finally:
        await context.close()


def http_floor(base: str, url: str, size: int, n: int = 20) -> dict[str, Any]:
    """Plain HTTP Range reads of 64 KiB (keep-alive): at the start, and at 5/6 of the file."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=60) as h:
        h.get(url, headers={"Range": "bytes=0-1"})  # warm the connection
        for name, start in (("start", 0), ("at_5_6", size * 5 // 6)):
            times, status, length = [], None, None
            for _ in range(n):
                t0 = time.perf_counter()
                r = h.get(url, headers={"Range": f"bytes={start}-{start + 65535}"})
                times.append((time.perf_counter() - t0) * 1000)
                status, length = r.status_code, len(r.content)
            out[f"range_64k_{name}_ms"] = stats(times)
            out[f"range_64k_{name}_status"] = status
            out[f"range_64k_{name}_len"] = length
        # an open-ended range as browsers send it: time to the first body bytes
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            with h.stream("GET", url, headers={"Range": f"bytes={size // 2}-"}) as r:
                next(r.iter_raw(65536))
                times.append((time.perf_counter() - t0) * 1000)
        out["open_range_first_bytes_ms"] = stats(times)
        out["accept_ranges"] = r.headers.get("accept-ranges")
    return out


def summarise(runs: list[dict[str, Any]], fps: int = 15) -> dict[str, Any]:
    per_seek: dict[float, list[dict[str, Any]]] = {}
    for s in (s for r in runs for s in r["seeks"]):
        per_seek.setdefault(s["to"], []).append(s)

    def seek_summary(to: float, done: list[dict[str, Any]]) -> dict[str, Any]:
        landed = [s["frame_media_time"] for s in done]
        return {"seek_ms": stats([s["seek_ms"] for s in done]), "requests": stats([s["requests"] for s in done]),
                "bytes_during": stats([s["bytes"] for s in done]), "frame_media_time": round(landed[0], 3),
                # the frame presented is the one showing at the target
                "frame_right": all(to - 1 / fps - 1e-3 <= t <= to + 1e-3 for t in landed)}

    return {
        "first_frame_ms": stats([r["first_frame_ms"] for r in runs]),
        "seek_ms": stats([s["seek_ms"] for r in runs for s in r["seeks"]]),
        "metadata_ms": stats([r["metadata_ms"] for r in runs]),
        "first_frame_requests": stats([r["requests"] for r in runs]),
        "first_frame_bytes_during": stats([r["bytes"] for r in runs]),
        "seeks": {f"{to:g}": seek_summary(to, done) for to, done in per_seek.items()},
        "duration_in_browser_s": round(runs[0]["duration"], 2),
        "video_size": [runs[0]["width"], runs[0]["height"]],
    }


async def measure(base: str, codecs: list[str], seeks: list[float], reps: int, listing: Any) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    results: dict[str, Any] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
        try:
            for codec in codecs:
                res: dict[str, Any] = {}
                if codec == "h264":  # the first replay makes the MP4 copy
                    first = await replay_once(browser, base, listing()[codec]["media_url"], seeks)
                    req0 = min(first["media_requests"], key=lambda r: r["sent"])
                    res["first_replay"] = {
                        "first_frame_ms": round(first["first_frame_ms"], 1),
                        # the MP4 copy is made before the first response: this is mostly its time
                        "first_request_to_headers_ms": round(req0["headers_s"] * 1000, 1),
                        "seek_ms": [round(s["seek_ms"], 1) for s in first["seeks"]],
                    }
                    res["first_replay"]["target_met"] = (first["first_frame_ms"] < TARGET_MS
                                                         and all(s["seek_ms"] < TARGET_MS for s in first["seeks"]))
                runs = [await replay_once(browser, base, listing()[codec]["media_url"], seeks) for _ in range(reps)]
                res.update(summarise(runs))
                res["ranges_first_run"] = [[r["range"], r.get("status"), r["bytes"]] for r in runs[0]["media_requests"]]
                results[codec] = res
        finally:
            await browser.close()
    return results


# ------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=1800.0, help="recording length, seconds")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--clip-s", type=float, default=10.0, help="looped clip length = key frame interval, seconds")
    p.add_argument("--seeks", default="1500,754,1199.9", help="seek targets, seconds")
    p.add_argument("--codecs", default="vp8,h264")
    args = p.parse_args()
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    seeks = [float(s) for s in args.seeks.split(",")]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="vbranch-replay-")
    env = {**os.environ, "VBRANCH_DATA_DIR": tmp, "VBRANCH_LOG_LEVEL": "warning",
           "VBRANCH_SECRET_KEY": "bench-secret-" + "x" * 32}
    server = subprocess.Popen([sys.executable, "-m", "vbranch.cli", "serve", "--demo", "--port", str(port)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stack = contextlib.ExitStack()
    try:
        wait_up(base, server)
        from vbranch.demo import demo_api_key

        h = stack.enter_context(httpx.Client(base_url=base, timeout=120))
        r = h.post("/api/v1/sessions", headers={"X-Api-Key": demo_api_key(env["VBRANCH_SECRET_KEY"])},
                   json={"service": "account_opening", "channel": "web", "customer": {"ref": "R1", "name": "Replay"}})
        if r.status_code != 201:
            raise RuntimeError(f"creating a session: {r.status_code} {r.text}")
        session_id = r.json()["session_id"]

        made: dict[str, dict[str, Any]] = {}
        for codec in codecs:
            made[codec] = make_recording(codec, Path(tmp) / "recordings", session_id, args.duration, args.clip_s)
            register(Path(tmp) / "vbranch.db", session_id, made[codec]["result"])

        login = h.post("/api/v1/auth/login", json={"username": "reviewer", "password": "demo"})
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['token']}"}

        def listing() -> dict[str, dict[str, Any]]:
            rows = h.get(f"/api/v1/sessions/{session_id}/recordings", headers=auth)
            rows.raise_for_status()
            return {row["video_codec"]: row for row in rows.json()}

        t0 = time.perf_counter()
        results = asyncio.run(measure(base, codecs, seeks, args.reps, listing))
        browser_s = time.perf_counter() - t0

        out: dict[str, Any] = {"bench": "replay", "duration_s": args.duration}
        met = first_met = True
        rows = listing()
        for codec in codecs:
            m, rec = made[codec], made[codec]["result"]
            res = results[codec]
            res["recording"] = {
                "container": rec.container, "size_mb": round(rec.size_bytes / 1e6, 1),
                "kbit_s": round(rec.size_bytes * 8 / rec.duration_s / 1000), "duration_s": rec.duration_s,
                "key_frame_interval_s": m["key_frame_interval_s"], "generate_s": round(m["clip_encode_s"] + m["write_s"], 1),
            }
            if codec == "h264":
                copy = Path(tmp) / "recordings" / (rec.storage_key + ".play.mp4")
                res["recording"]["mp4_copy_mb"] = round(copy.stat().st_size / 1e6, 1) if copy.exists() else None
            served = rows[codec]
            size = rec.size_bytes if codec != "h264" else copy.stat().st_size
            res["http_floor"] = http_floor(base, served["media_url"], size)
            ok = res["first_frame_ms"]["max"] < TARGET_MS and res["seek_ms"]["max"] < TARGET_MS
            ok = ok and all(s["frame_right"] for s in res["seeks"].values())
            res["target_met"] = ok  # later replays; the H.264 first replay has its own below
            met = met and ok
            first_met = first_met and res.get("first_replay", {}).get("target_met", True)
            out[codec] = res
        out["browser_phase_s"] = round(browser_s, 1)
        out["target"] = {"first_frame_ms": TARGET_MS, "seek_ms": TARGET_MS}
        out["target_met"] = met and first_met  # every replay, the H.264 one that makes the MP4 copy included
        out["target_met_after_mp4_copy"] = met
        print(json.dumps(out))
    except BaseException:
        server.terminate()
        print((server.communicate(timeout=10)[0] or "")[-4000:], file=sys.stderr)
        raise
    finally:
        stack.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
