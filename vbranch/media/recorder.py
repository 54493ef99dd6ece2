"""Per-party recording of encoded frames into a crash-safe Matroska/WebM file.

Subscribes to a party's audio and video :class:`MediaSource`. Frames are
written with the codec they arrived in (VP8/H.264 video, Opus audio). Timestamps
are milliseconds from the first recorded frame (whose wall-clock time is
``started_at``); each stream is anchored on the arrival time of its first frame
(and again after a reconnect), so audio and video line up and the two parties'
files can be replayed in sync from their ``started_at``.

The file is created when the first frames arrive and every expected stream is
known (video needs a key frame for its size), or after ``header_wait_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from recordings.storage import KeyExistsError, RecordingStorage
from recordings.writer import MatroskaPacketWriter, StreamSpec, container_for
from vbranch.clock import Clock

from .codecs import opus_duration_ms, video_dimensions
from .forwarding import EncodedFrame

log = logging.getLogger(__name__)

RECORDABLE_VIDEO = {"vp8", "h264"}
TRANSCODABLE_AUDIO = {"pcmu", "pcma", "g722"}  # recorded as Opus (cheap audio encode)


@dataclass
class RecordingResult:
    party: str
    storage_key: str
    container: str  # "webm" | "matroska"
    video_codec: str | None
    audio_codec: str | None
    started_at: float  # wall clock of the first recorded frame
    duration_s: float
    size_bytes: int
    sha256: str
    video_frames: int = 0
    audio_frames: int = 0
    finalised_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_new_recording(storage: RecordingStorage, base: str, ext: str) -> tuple[str, BinaryIO]:
    """Open ``base.ext``, or ``base-2.ext``, ... if a recording already has that key."""
    for attempt in range(1, 100):
        key = f"{base}.{ext}" if attempt == 1 else f"{base}-{attempt}.{ext}"
        try:
            return key, storage.open_write(key)
        except KeyExistsError:
            continue
    raise KeyExistsError(f"too many recordings for {base}")


class _AudioToOpus:
    """G.711/G.722 -> Opus for the recording only (audio encode is cheap)."""

    def __init__(self, frame: EncodedFrame) -> None:
        self._decoder = get_decoder(frame.codec)
        self._encoder = OpusEncoder()

    def convert(self, frame: EncodedFrame) -> list[bytes]:
        out: list[bytes] = []
        for decoded in self._decoder.decode(JitterFrame(frame.data, frame.timestamp)):
            payloads, _ = self._encoder.encode(decoded)
            out.extend(payloads)
        return out


class PartyRecorder:
    def __init__(
        self,
        *,
        session_id: str,
        party: str,
        storage: RecordingStorage,
        clock: Clock,
        expected_kinds: set[str],
        key_prefix: str = "",
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        request_keyframe: Callable[[str], None] | None = None,
        cluster_ms: int = 1000,
        header_wait_s: float = 2.0,
    ) -> None:
        self.session_id = session_id
        self.party = party
        self.storage = storage
        self.clock = clock
        self.expected_kinds = set(expected_kinds)
        self.key_prefix = key_prefix
        self.cluster_ms = cluster_ms
        self.header_wait_s = header_wait_s
        self.storage_key: str | None = None
        self.started_at: float | None = None
        self.writer: MatroskaPacketWriter | None = None
        self.failed: str | None = None
        self.closed = False
        self.dropped = {"audio": 0, "video": 0}
        self._on_event = on_event
        self._request_keyframe = request_keyframe
        self._t0: float | None = None
        self._specs: dict[str, StreamSpec] = {}
        self._pending: list[tuple[str, bytes, int, bool, int | None]] = []
        self._anchor: dict[str, tuple[int, float]] = {}
        self._video_need_key = True
        self._video_generation: int | None = None
        self._audio_transcoder: _AudioToOpus | None = None
        self._warned: set[str] = set()

    # -- subscriber interface (event loop, synchronous) --------------------
    def push(self, frame: EncodedFrame) -> None:
        if self.closed or self.failed:
            return
        kind = frame.kind
        if kind == "video":
            if frame.key not in RECORDABLE_VIDEO:
                self._warn(f"video codec {frame.key} cannot be recorded")
                return
            if frame.generation != self._video_generation:
                self._video_generation = frame.generation
                self._video_need_key = True  # new connection: start again on a key frame
            if self._video_need_key:
                if not frame.keyframe:
                    self.dropped["video"] += 1
                    if self._request_keyframe is not None:
                        self._request_keyframe("recorder_start")
                    return
                self._video_need_key = False
            if "video" not in self._specs:
                dims = video_dimensions(frame.key, frame.data) or (0, 0)
                self._specs["video"] = StreamSpec("video", frame.key, width=dims[0], height=dims[1])
        elif "audio" not in self._specs:
            if frame.key == "opus" or frame.key in TRANSCODABLE_AUDIO:
                self._specs["audio"] = StreamSpec("audio", "opus")
            else:
                self._warn(f"audio codec {frame.key} cannot be recorded")
                return

        if self._t0 is None:
            self._t0 = frame.arrival
            self.started_at = self.clock.now() - (time.monotonic() - frame.arrival)
        spec = self._specs.get(kind)
        if spec is None:
            return
        if kind == "video" and frame.key != spec.codec:
            self._warn(f"video codec changed to {frame.key}; not recorded")
            self.dropped["video"] += 1
            return

        pts = self._pts_ms(frame)
        if kind == "audio" and frame.key != "opus":
            if self._audio_transcoder is None:
                self._audio_transcoder = _AudioToOpus(frame)
            items = [(kind, data, pts + 20 * i, True, 20) for i, data in enumerate(self._audio_transcoder.convert(frame))]
        elif kind == "audio":
            items = [(kind, frame.data, pts, True, int(round(opus_duration_ms(frame.data))))]
        else:
            items = [(kind, frame.data, pts, frame.keyframe, None)]

        if self.writer is None:
            self._pending.extend(items)
            ready = self.expected_kinds.issubset(self._specs)
            waited = time.monotonic() - self._t0 >= self.header_wait_s
            if ready or waited:
                self._start()
            return
        self._write(items)

    # -----------------------------------------------------------------------
    def _pts_ms(self, frame: EncodedFrame) -> int:
        anchor = self._anchor.get(frame.kind)
        if anchor is None or anchor[0] != frame.generation:
            assert self._t0 is not None
            offset = (frame.arrival - self._t0) * 1000.0 - frame.timestamp * 1000.0 / frame.clock_rate
            anchor = (frame.generation, offset)
            self._anchor[frame.kind] = anchor
        return int(round(anchor[1] + frame.timestamp * 1000.0 / frame.clock_rate))

    def _start(self) -> None:
        specs = [self._specs[k] for k in ("video", "audio") if k in self._specs]
        if not specs:
            return
        fmt = container_for([s.codec for s in specs])
        ext = "webm" if fmt == "webm" else "mkv"
        try:
            self.storage_key, fileobj = open_new_recording(
                self.storage, f"{self.key_prefix}{self.session_id}/{self.party}", ext
            )
            try:
                self.writer = MatroskaPacketWriter(fileobj, specs, cluster_ms=self.cluster_ms)
            except Exception:
                fileobj.close()
                raise
        except Exception as exc:
            self._fail(exc)
            return
        self._emit(
            "media.recording_started",
            {
                "party": self.party,
                "storage_key": self.storage_key,
                "container": self.writer.format,
                "video_codec": self.writer.codec("video"),
                "audio_codec": self.writer.codec("audio"),
                "started_at": self.started_at,
            },
        )
        pending, self._pending = self._pending, []
        # interleave what was buffered by time, as it would have arrived
        pending.sort(key=lambda item: item[2])
        self._write(pending)

    def _write(self, items: list[tuple[str, bytes, int, bool, int | None]]) -> None:
        writer = self.writer
        assert writer is not None
        for kind, data, pts, key, duration in items:
            if kind not in writer.kinds:
                self.dropped[kind] += 1
                continue
            try:
                writer.write(kind, data, pts, keyframe=key, duration_ms=duration)
            except Exception as exc:
                self._fail(exc)
                return

    def _fail(self, exc: BaseException) -> None:
        log.exception("recording of %s/%s failed", self.session_id, self.party, exc_info=exc)
        self.failed = f"{type(exc).__name__}: {exc}"
        self._emit("media.recording_error", {"party": self.party, "error": self.failed})

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._emit("media.recording_warning", {"party": self.party, "message": message})

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(kind, data)

    def sync(self) -> bool:
        """fsync (from a worker thread); see MatroskaPacketWriter.sync."""
        writer = self.writer
        return writer.sync() if writer is not None else False

    def stats(self) -> dict[str, Any]:
        writer = self.writer
        return {
            "storage_key": self.storage_key,
            "started_at": self.started_at,
            "video_codec": writer.codec("video") if writer else None,
            "video_frames": writer.packets("video") if writer else 0,
            "audio_frames": writer.packets("audio") if writer else 0,
            "dropped": dict(self.dropped),
            "failed": self.failed,
        }

    async def close(self, executor: Executor | None = None) -> RecordingResult | None:
        """Finish the file (Cues, Duration), fsync it, hash it; None if nothing was recorded."""
        if self.closed:
            return None
        self.closed = True
        if self.writer is None and self._pending and not self.failed:
            self._start()
        writer = self.writer
        if writer is None or self.storage_key is None:
            return None
        key = self.storage_key
        loop = asyncio.get_running_loop()

        def finish() -> Any:
            try:
                writer.close()
            except Exception:  # the file is still a valid (unfinalised) Matroska stream
                log.exception("closing recording %s failed", key)
            return self.storage.finalize(key)

        stored = await loop.run_in_executor(executor, finish)
        result = RecordingResult(
            party=self.party,
            storage_key=key,
            container=writer.format,
            video_codec=writer.codec("video"),
            audio_codec=writer.codec("audio"),
            started_at=float(self.started_at or 0.0),
            duration_s=round(writer.duration_s, 3),
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            video_frames=writer.packets("video"),
            audio_frames=writer.packets("audio"),
            finalised_at=self.clock.now(),
        )
        self._emit("media.recording_finalised", result.as_dict())
        return result
