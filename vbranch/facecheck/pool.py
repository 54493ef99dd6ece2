"""The worker pool adapter: runs the engine in a ProcessPoolExecutor.

Each worker loads the models once (initializer).  The event loop only pickles a
small frame (about 0.5 MB at 480x360) and awaits the result.  Workers are
started with the "spawn" method by default: forking a process that already has
aiortc/uvicorn threads running is not safe.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from . import engine
from .types import FaceCheckConfig, FaceEngineUnavailable, FrameAnalysis, ReferenceFace


def default_workers() -> int:
    return max(1, min(2, (os.cpu_count() or 1) - 1))


class FaceCheckPool:
    """A process pool for face work.  Use as ``async with FaceCheckPool() as pool``
    or call ``await pool.start()`` at app start (loads the models ahead of the
    first check) and ``pool.close()`` at shutdown.

    ``workers`` defaults to 1 on a 2-core machine (cpu_count - 1, at most 2).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        mp_context: str = "spawn",
        config: FaceCheckConfig | None = None,
        call_timeout_s: float = 30.0,
    ) -> None:
        self.workers = workers or default_workers()
        self.mp_context = mp_context
        self.config = config or FaceCheckConfig()
        self.call_timeout_s = call_timeout_s
        self._executor: ProcessPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle
    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self.mp_context),
                initializer=engine.init_worker,
            )
        return self._executor

    async def start(self) -> list[int]:
        """Start every worker and wait until its models are loaded; returns their pids."""
        loop = asyncio.get_running_loop()
        ex = self._ensure()
        pids = await asyncio.gather(*(loop.run_in_executor(ex, engine.worker_ping) for _ in range(self.workers)))
        return sorted(set(pids))

    def close(self, wait: bool = True) -> None:
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=wait, cancel_futures=True)

    async def aclose(self) -> None:
        ex, self._executor = self._executor, None
        if ex is not None:
            await asyncio.get_running_loop().run_in_executor(None, functools.partial(ex.shutdown, wait=True, cancel_futures=True))

    async def __aenter__(self) -> "FaceCheckPool":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ calls
    async def _call(self, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        ex = self._ensure()
        try:
            fut = loop.run_in_executor(ex, functools.partial(fn, *args, **kwargs))
            return await asyncio.wait_for(fut, self.call_timeout_s)
        except BrokenProcessPool as exc:
            # a worker died (killed, out of memory): drop the pool, the next call makes a new one
            if self._executor is ex:
                self._executor = None
                ex.shutdown(wait=False, cancel_futures=True)
            raise FaceEngineUnavailable(f"face check worker died: {exc}") from exc

    async def analyse_reference(self, image_bytes: bytes, **kwargs: Any) -> ReferenceFace:
        """engine.analyse_reference in a worker; raises ReferencePhotoError (with .code)."""
        return await self._call(engine.analyse_reference, bytes(image_bytes), **kwargs)

    async def analyse_frame(
        self, frame_bgr: np.ndarray, *, want_encoding: bool = False, config: FaceCheckConfig | None = None
    ) -> FrameAnalysis:
        """engine.analyse_frame in a worker, tuned by ``config`` (default: the pool's).
        Pass a frame already downscaled (frames.to_small_bgr) to keep pickling cheap."""
        cfg = config or self.config
        return await self._call(
            engine.analyse_frame,
            frame_bgr,
            want_encoding=want_encoding,
            detect_width=cfg.detect_width,
            max_encode_yaw=cfg.max_encode_yaw,
            extra_face_min_score=cfg.extra_face_min_score,
        )
