"""Many short calls leave nothing behind: no peer connections, tracks, tasks, threads or files."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiortc import RTCPeerConnection

from recordings.writer import MatroskaPacketWriter
from vbranch.media.forwarding import ForwardTrack, MediaSource
from vbranch.media.recorder import PartyRecorder
from vbranch.media.tap import VideoTap

from .helpers import count_instances, live_tasks, live_threads, open_fds, start_call

pytestmark = pytest.mark.media


async def one_call(hub, session_id, clip, *, hang_up_customer_first: bool) -> None:
    call = await start_call(hub, session_id, clip, wait_frames=3)
    tap = hub.tap_video(session_id, "customer")
    await tap.__anext__()
    await tap.aclose()
    if hang_up_customer_first:
        await call.customer.close()
        await hub.close_party(session_id, "customer")
    results = await hub.end_session(session_id)
    await call.close()
    assert {r.party for r in results} == {"customer", "agent"}


async def test_ten_calls_do_not_grow_fds_tasks_threads_or_objects(hub, clip):
    await one_call(hub, "warm-up", clip, hang_up_customer_first=False)  # lazy threads, codecs
    await asyncio.sleep(0.2)
    fds, tasks, threads = open_fds(), live_tasks(), live_threads(exclude="vbranch-media")

    for i in range(10):
        await one_call(hub, f"call-{i}", clip, hang_up_customer_first=i % 2 == 0)

    await asyncio.sleep(0.3)
    assert hub.sessions() == []
    assert open_fds() <= fds, "file descriptors leaked"
    assert live_tasks() <= tasks, [t for t in asyncio.all_tasks() if not t.done()]
    # the hub's worker pool is bounded (2 threads); nothing else may stay behind
    assert live_threads(exclude="vbranch-media") <= threads, [t.name for t in threading.enumerate()]
    assert live_threads() - live_threads(exclude="vbranch-media") <= 2
    leftovers = count_instances(
        RTCPeerConnection, ForwardTrack, MediaSource, PartyRecorder, MatroskaPacketWriter, VideoTap
    )
    assert leftovers == dict.fromkeys(leftovers, 0)
