"""The test-support pieces other tests build on (fake camera track, y4m files)."""

from __future__ import annotations

import asyncio

import numpy as np

from vbranch.facecheck import analyse_frame
from vbranch.facecheck.frames import to_small_bgr
from vbranch.facecheck.testing import PuppetCamera, puppet_clip, puppet_video_track, write_y4m


async def test_puppet_track_gives_av_frames_that_react_to_challenges(puppet):
    cam = PuppetCamera(puppet, react_after_s=0.0, duration_s=2.0)
    track = puppet_video_track(cam)
    first = await track.recv()
    assert (first.width, first.height) == (640, 480)
    await cam.send_challenge("open_mouth", 5.0)
    await asyncio.sleep(0.6)  # past the 0.5 s ramp: mouth fully open
    frame = await track.recv()
    a = to_small_bgr(first, 480).astype(int)
    b = to_small_bgr(frame, 480).astype(int)
    assert np.abs(a - b).mean() > 0.5
    assert analyse_frame(to_small_bgr(frame, 480)).faces == 1
    assert cam.sent == [("open_mouth", 5.0)]
    track.stop()


def test_y4m_clip(puppet, tmp_path):
    frames = puppet_clip(puppet, sequence=(None, "blink"), fps=10, action_s=0.6, gap_s=0.2)
    path = tmp_path / "face.y4m"
    n = write_y4m(path, frames, fps=10)
    assert n == len(frames) == 16
    data = path.read_bytes()
    header = data.split(b"\n", 1)[0]
    assert header == b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg"
    assert len(data) == len(header) + 1 + n * (len(b"FRAME\n") + 640 * 480 * 3 // 2)
    assert analyse_frame(frames[0]).faces == 1
