"""Decoded video for whoever needs pixels (face check, quality checks).

A :class:`VideoTap` subscribes to a party's video source only while it is being
iterated (from the first ``__anext__`` until ``aclose``/end of session). It keeps
the encoded frames that arrive meanwhile (bounded), decodes them in order in a
worker thread when the consumer asks for the next frame, and returns the newest
decoded frame, so a slow consumer always gets a fresh picture and never makes
frames pile up. Nothing is decoded while nobody asks.

Usage::

    async with hub.tap_video(session_id, "customer", format="bgr24") as tap:
        async for image in tap:       # numpy HxWx3 uint8 (or av.VideoFrame)
            ...
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import Executor
from typing import Any

import av
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame

from .forwarding import EncodedFrame, MediaSource

TAP_QUEUE_MAX = 45  # ~3 s at 15 fps; beyond that drop and resync on a key frame


class VideoTap:
    def __init__(
        self,
        source: MediaSource | None,
        *,
        executor: Executor | None = None,
        format: str | None = None,
        name: str = "tap",
        on_close: Any = None,
    ) -> None:
        self._source = source
        self._executor = executor
        self._format = format
        self._name = name
        self._on_close = on_close
        self._queue: collections.deque[EncodedFrame] = collections.deque()
        self._event = asyncio.Event()
        self._subscribed = False
        self._closed = source is None
        self._need_keyframe = True
        self._decoder: Any = None
        self._decoder_key: str | None = None
        self._reset = False
        self._generation: int | None = None
        self.frames_decoded = 0
        self.frames_returned = 0

    @property
    def active(self) -> bool:
        """Subscribed to the source (someone is iterating)."""
        return self._subscribed

    # subscriber interface
    def push(self, frame: EncodedFrame) -> None:
        if self._closed:
            return
        if frame.generation != self._generation:
            self._generation = frame.generation
            if not self._need_keyframe:
                self._need_keyframe = True
                self._reset = True
        if self._need_keyframe:
            if not frame.keyframe:
                assert self._source is not None
                self._source.request_keyframe(self._name, "tap_start")
                return
            self._need_keyframe = False
        if len(self._queue) >= TAP_QUEUE_MAX:
            self._queue.clear()
            self._reset = True
            if not frame.keyframe:
                self._need_keyframe = True
                assert self._source is not None
                self._source.request_keyframe(self._name, "tap_overflow")
                return
        self._queue.append(frame)
        self._event.set()

    def __aiter__(self) -> VideoTap:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        if not self._subscribed:
            assert self._source is not None
            self._subscribed = True
            self._source.subscribe(self)
            self._source.request_keyframe(self._name, "tap_start")
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._event.clear()
                await self._event.wait()
                if self._closed:
                    raise StopAsyncIteration
            batch = list(self._queue)
            self._queue.clear()
            reset, self._reset = self._reset, False
            result = await loop.run_in_executor(self._executor, self._decode_batch, batch, reset)
            if self._closed:
                raise StopAsyncIteration
            if result is not None:
                self.frames_returned += 1
                return result

    def _decode_batch(self, batch: list[EncodedFrame], reset: bool) -> Any:
        # runs in a worker thread; one call at a time per tap
        decoder, key = (None, None) if reset else (self._decoder, self._decoder_key)
        last: av.VideoFrame | None = None
        for frame in batch:
            if decoder is None or key != frame.key:
                if not frame.keyframe:
                    continue
                decoder = get_decoder(frame.codec)
                key = frame.key
            try:
                decoded = decoder.decode(JitterFrame(frame.data, frame.timestamp))
            except av.FFmpegError:
                continue
            self.frames_decoded += len(decoded)
            if decoded:
                last = decoded[-1]
        self._decoder, self._decoder_key = (None, None) if self._closed else (decoder, key)
        if last is None:
            return None
        if self._format:
            return last.to_ndarray(format=self._format)
        return last

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed and not self._subscribed:
            return
        self._closed = True
        if self._subscribed and self._source is not None:
            self._source.unsubscribe(self)
        self._subscribed = False
        self._queue.clear()
        self._event.set()
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    async def __aenter__(self) -> VideoTap:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

