"""SIGKILL the hub mid-call: the recordings still open and play up to <= 2 s before the kill."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from recordings.writer import probe, remux

pytestmark = pytest.mark.media

SCRIPT = Path(__file__).with_name("crash_hub.py")
RECORD_FOR_S = 4.5


def read_event(proc: subprocess.Popen, deadline: float) -> dict:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the hub process said nothing in time")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the hub process exited: {proc.wait()}")
            return json.loads(line)


def test_recordings_survive_sigkill(tmp_path):
    root = tmp_path / "recordings"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        started: dict[str, dict] = {}
        while True:
            event = read_event(proc, deadline)
            if event["event"] == "media.recording_started":
                started[event["party"]] = event
            elif event["event"] == "tick" and len(started) == 2:
                if time.time() - max(e["started_at"] for e in started.values()) >= RECORD_FOR_S:
                    break
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    for party, event in started.items():
        path = root / event["storage_key"]
        info = probe(path)  # opens without Duration/Cues
        assert info.header_duration_s is None, "the file was never finalised"
        assert info.video_codec == "vp8" and info.audio_codec == "opus"
        covered_until = event["started_at"] + max(info.last_s.values())
        lost = killed_at - covered_until
        print(f"{party}: {lost:.2f} s lost, {info.video_frames} frames")
        assert lost <= 2.0, f"{party}: {lost:.2f} s lost"
        # every frame that made it decodes
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == info.video_frames >= RECORD_FOR_S * 15 - 2 * 15
        # and a stream copy makes a finalised file of it when needed
        fixed = tmp_path / f"{party}-fixed.webm"
        remux(path, fixed)
        assert probe(fixed).header_duration_s == pytest.approx(info.duration_s, abs=0.1)
