"""A 30-second recording made by the recorder plays in Chromium (served with HTTP Range).

For speed the call is synthetic: pre-encoded VP8/Opus frames go through the real
PartyRecorder with 30 s of arrival times, without waiting 30 s. A copy of the
file taken mid-recording (what a SIGKILL leaves) must play too.
"""

from __future__ import annotations

import shutil
import time

import av
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from recordings.playback import ensure_playable, needs_copy
from recordings.writer import probe, remux
from vbranch.clock import SystemClock
from vbranch.media.forwarding import EncodedFrame
from vbranch.media.recorder import PartyRecorder

from .helpers import CHROMIUM_ARGS, serve_storage, write_h264_mkv

pytestmark = [pytest.mark.media, pytest.mark.browser]

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)

PAGE = """<!doctype html>
<video id="v" muted playsinline preload="auto"></video>
<script>
window.check = async (src, seekTo) => {
  const v = document.getElementById('v');
  v.src = src;
  await new Promise((ok, fail) => {
    v.onloadedmetadata = ok;
    v.onerror = () => fail(new Error('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message)));
  });
  const duration = v.duration;
  await v.play();
  const t0 = performance.now();
  while (v.currentTime < 1.5 && performance.now() - t0 < 15000) await new Promise(r => setTimeout(r, 50));
  const result = {duration, played: v.currentTime, readyState: v.readyState,
                  width: v.videoWidth, height: v.videoHeight};
  if (seekTo !== null) {
    v.currentTime = seekTo;
    await new Promise(r => v.onseeked = r);
    const t1 = performance.now(), from = v.currentTime;
    while (v.currentTime < from + 0.5 && performance.now() - t1 < 10000) await new Promise(r => setTimeout(r, 50));
    result.seeked = from;
    result.after_seek = v.currentTime;
  }
  const q = v.getVideoPlaybackQuality();
  result.frames = q.totalVideoFrames;
  result.error = v.error && v.error.code;
  return result;
};
</script>
"""


async def record_synthetic_call(storage, clip, seconds: float, snapshot_at: float, snapshot_key: str):
    recorder = PartyRecorder(
        session_id="replay",
        party="customer",
        storage=storage,
        clock=SystemClock(),
        expected_kinds={"audio", "video"},
    )
    base = time.monotonic() - seconds
    frames = []
    for i in range(int(seconds * clip.fps)):
        data, key = clip.video[i % len(clip.video)]
        frames.append((i / clip.fps, EncodedFrame("video", VP8, "vp8", data, i * 90000 // clip.fps, key, 0.0, 1)))
    for j in range(int(seconds * 50)):
        data = clip.audio[j % len(clip.audio)]
        frames.append((j * 0.02 + 0.005, EncodedFrame("audio", OPUS, "opus", data, j * 960, True, 0.0, 1)))
    frames.sort(key=lambda item: item[0])
    snapshot_taken = False
    for t, frame in frames:
        if not snapshot_taken and t >= snapshot_at:
            # what is on disk now is what a crash would leave
            shutil.copyfile(storage.local_path(recorder.storage_key), storage.path(snapshot_key))
            snapshot_taken = True
        frame.arrival = base + t
        recorder.push(frame)
    return await recorder.close()


def write_h264_recording(storage) -> tuple[str, str]:
    """A short H.264+Opus Matroska recording and its stream-copied MP4 for browsers."""
    write_h264_mkv(storage, "h264/agent.mkv", 4.0, 300_000)
    storage.finalize("h264/agent.mkv")
    assert needs_copy("matroska", "h264") and not needs_copy("webm", "vp8")
    copy = ensure_playable(storage, "h264/agent.mkv")
    assert ensure_playable(storage, "h264/agent.mkv") == copy  # made once
    with storage.open_write("h264/agent.frag.mp4") as out:  # the fragmented flavour plays as well
        remux(storage.local_path("h264/agent.mkv"), out, format="mp4")
    return "h264/agent.mkv", copy


async def test_chromium_plays_and_seeks_a_30_second_recording(storage, clip):
    from playwright.async_api import async_playwright

    result = await record_synthetic_call(storage, clip, 30.0, 20.0, "replay/crashed.webm")
    _, h264_mp4 = write_h264_recording(storage)
    assert result.duration_s == pytest.approx(30.0, abs=0.2)
    assert probe(storage.local_path(result.storage_key)).header_duration_s == pytest.approx(30.0, abs=0.2)
    crashed = probe(storage.local_path("replay/crashed.webm"))
    assert crashed.header_duration_s is None and crashed.duration_s >= 18.0

    with serve_storage(storage, {"/": PAGE}) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(base + "/")
                full = await page.evaluate("([s, t]) => window.check(s, t)", [f"/media/{result.storage_key}", 25.0])
                cut = await page.evaluate("([s, t]) => window.check(s, t)", ["/media/replay/crashed.webm", None])
                mp4 = await page.evaluate("([s, t]) => window.check(s, t)", [f"/media/{h264_mp4}", 3.0])
                frag = await page.evaluate("([s, t]) => window.check(s, t)", ["/media/h264/agent.frag.mp4", None])
            finally:
                await browser.close()

    assert full["error"] is None
    assert full["duration"] == pytest.approx(30.0, abs=0.5)
    assert full["readyState"] >= 2 and full["played"] >= 1.5
    assert (full["width"], full["height"]) == (clip.width, clip.height)
    assert full["seeked"] == pytest.approx(25.0, abs=1.0) and full["after_seek"] > full["seeked"]
    assert full["frames"] > 20
    # the unfinalised file has no duration in its header but plays all the same
    assert cut["error"] is None and cut["readyState"] >= 2 and cut["played"] >= 1.5
    # an H.264 recording (Matroska) remuxed to MP4 without re-encoding plays too
    assert mp4["error"] is None and mp4["played"] >= 1.5 and (mp4["width"], mp4["height"]) == (320, 240)
    assert mp4["duration"] == pytest.approx(4.0, abs=0.3)
    assert mp4["seeked"] == pytest.approx(3.0, abs=0.5) and mp4["after_seek"] > mp4["seeked"]
    assert frag["error"] is None and frag["played"] >= 1.5
    # stream copy: the same H.264 bytes, no re-encode
    with av.open(str(storage.local_path(h264_mp4))) as copied, av.open(str(storage.local_path("h264/agent.mkv"))) as orig:
        a = [bytes(p) for p in copied.demux(copied.streams.video[0]) if p.size]
        b = [bytes(p) for p in orig.demux(orig.streams.video[0]) if p.size]
    assert a == b
