"""The worker pool: separate processes, recovery after a worker dies, cancellation."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from vbranch.facecheck import FaceCheckPool, FaceEngineUnavailable, FaceCheckSession
from vbranch.facecheck.frames import to_small_bgr


async def test_work_runs_in_other_processes_and_survives_a_dead_worker(astro_frame_bgr):
    small = to_small_bgr(astro_frame_bgr, 480)
    async with FaceCheckPool(workers=1) as pool:
        pids = await pool.start()
        assert len(pids) == 1 and os.getpid() not in pids
        assert (await pool.analyse_frame(small)).faces == 1
        os.kill(pids[0], signal.SIGKILL)  # a worker we started ourselves
        await asyncio.sleep(0.5)
        with pytest.raises(FaceEngineUnavailable):
            await pool.analyse_frame(small)
        # the next call gets a fresh pool
        assert (await pool.analyse_frame(small)).faces == 1
        assert pids[0] not in await pool.start()


async def test_cancelling_a_check_closes_the_frame_source(pool, astro_frame_bgr, astro_ref):
    closed: list = []
    frames_seen = 0

    async def camera():
        nonlocal frames_seen
        try:
            while True:
                frames_seen += 1
                yield astro_frame_bgr
                await asyncio.sleep(1 / 15)
        finally:
            closed.append(True)

    async def send(action, timeout_s):
        return None

    session = FaceCheckSession(pool, astro_ref, camera(), send)
    task = asyncio.create_task(session.run())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert frames_seen > 0
    assert closed == [True]
    assert session._latest is None
