"""Face check benchmark: per-frame cost and the wall time of whole checks.

Prints one JSON line:

- frame_ms: detect + 68 landmarks + encode of a 640x480 frame, as the runner
  does it (downscale to 480 wide, HOG at 320 wide, landmarks and encoding at
  480), median and p95 over varied frames; "inprocess" is the engine called
  directly, "pool" the round trip through a worker (downscale, pickling, IPC);
  "landmarks_only" is a liveness frame (no encoding);
- check_s: wall time of whole checks with two random challenges, fed at 15 fps
  by a fake camera that performs each challenge 0.4 s after it is sent
  (synthetic motion warped from the astronaut photo), challenge timeout 3 s;
- targets: median frame under 250 ms, whole check under 6 s.

Usage: python bench/facecheck.py [--frames N] [--checks N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vbranch.facecheck import FaceCheckConfig, FaceCheckPool, engine, run_face_check  # noqa: E402
from vbranch.facecheck.frames import to_small_bgr  # noqa: E402
from vbranch.facecheck.testing import (  # noqa: E402
    Puppet,
    PuppetCamera,
    astronaut_bgr,
    astronaut_frame,
    encode_jpeg,
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "p95": round(pct(values, 95), 2), "n": len(values)}


def varied_frames(puppet: Puppet, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    actions = [None, "blink", "open_mouth", "turn_left", "turn_right"]
    out = []
    for i in range(n):
        frame = puppet.render(actions[i % len(actions)], float(rng.uniform(0, 0.6)))
        noise = rng.normal(0, 2.0, frame.shape)
        out.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return out


async def bench(args) -> dict:
    cfg = FaceCheckConfig(challenge_timeout_s=3.0)
    frame = astronaut_frame()
    assert frame.shape == (480, 640, 3)
    landmarks = engine.analyse_frame(frame).landmarks
    puppet = Puppet(frame, landmarks)
    frames = varied_frames(puppet, args.frames)

    # in-process engine, the runner's settings
    inproc, lm_only = [], []
    for f in frames:
        t = time.perf_counter()
        small = to_small_bgr(f, cfg.frame_width)
        res = engine.analyse_frame(small, want_encoding=True, detect_width=cfg.detect_width, max_encode_yaw=1.0)
        inproc.append((time.perf_counter() - t) * 1000)
        assert res.encoding is not None
        t = time.perf_counter()
        engine.analyse_frame(to_small_bgr(f, cfg.frame_width), detect_width=cfg.detect_width)
        lm_only.append((time.perf_counter() - t) * 1000)
    full = []
    for f in frames[: max(5, args.frames // 4)]:
        t = time.perf_counter()
        engine.analyse_frame(f, want_encoding=True, detect_width=640, max_encode_yaw=1.0)
        full.append((time.perf_counter() - t) * 1000)

    pool = FaceCheckPool(workers=args.workers)
    t = time.perf_counter()
    await pool.start()
    startup_s = time.perf_counter() - t
    ref = await pool.analyse_reference(encode_jpeg(astronaut_bgr()))
    enc_cfg = FaceCheckConfig(max_encode_yaw=1.0)
    via_pool = []
    for f in frames:
        t = time.perf_counter()
        res = await pool.analyse_frame(to_small_bgr(f, cfg.frame_width), want_encoding=True, config=enc_cfg)
        via_pool.append((time.perf_counter() - t) * 1000)

    checks = []
    for seed in range(args.checks):
        cam = PuppetCamera(puppet, fps=15, react_after_s=0.4, jitter=1.5, seed=seed)
        t = time.perf_counter()
        result = await run_face_check(
            pool, ref, cam.frames(), cam.send_challenge, config=cfg, rng=random.Random(seed)
        )
        wall = time.perf_counter() - t
        checks.append(
            {
                "wall_s": round(wall, 3),
                "actions": [c.action for c in result.liveness.challenges],
                "passed": result.passed,
                "match": result.match,
                "distance": round(result.distance, 3) if result.distance is not None else None,
                "frames_sampled": result.frames_sampled,
                "frames_used": result.frames_used,
            }
        )

    async def still():
        while True:
            yield frame
            await asyncio.sleep(1 / 15)

    async def ignore(action, timeout_s):
        return None

    t = time.perf_counter()
    static = await run_face_check(pool, ref, still(), ignore, config=cfg, rng=random.Random(0))
    static_wall = time.perf_counter() - t
    await pool.aclose()

    walls = [c["wall_s"] for c in checks]
    frame_median = statistics.median(via_pool)
    return {
        "bench": "facecheck",
        "frame_size": [640, 480],
        "workers": args.workers,
        "frame_ms": {
            "inprocess": summary(inproc),
            "pool": summary(via_pool),
            "landmarks_only": summary(lm_only),
            "no_downscale_640": summary(full),
        },
        "pool_startup_s": round(startup_s, 2),
        "check_s": {
            "median": round(statistics.median(walls), 3),
            "max": round(max(walls), 3),
            "all_passed": all(c["passed"] for c in checks),
            "runs": checks,
            "challenge_timeout_s": cfg.challenge_timeout_s,
            "camera_fps": 15,
        },
        "static_photo_check": {
            "wall_s": round(static_wall, 3),
            "match": static.match,
            "liveness_passed": static.liveness.passed,
            "reasons": static.reasons,
        },
        "targets": {
            "frame_median_ms": 250,
            "check_s": 6.0,
            "frame_ok": frame_median < 250,
            "check_ok": max(walls) < 6.0,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--checks", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(bench(args))))


if __name__ == "__main__":
    main()
