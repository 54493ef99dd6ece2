"""The stock media path: aiortc's MediaRelay and MediaRecorder, kept to measure the hub against.

``MediaHub(mode="stock")`` (``VBRANCH_MEDIA_MODE=stock``) gives each session a
:class:`StockCall` instead of encoded-frame forwarding: each party's tracks are
relayed to the other through aiortc's MediaRelay (decoded and re-encoded), and
each party is recorded by aiortc's MediaRecorder into a WebM file started once
the party connects. bench/media.py compares the two paths.

- A party's reconnect is relayed but not re-recorded.
- No media health watch and no periodic fsync (those are the passthrough
  path's); the face check's tap relays frames that are decoded anyway
  (:class:`StockVideoTap`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpSender
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from recordings.storage import RecordingStorage
from recordings.writer import probe
from vbranch.clock import Clock

from .recorder import RecordingResult, open_new_recording

log = logging.getLogger(__name__)

# (kind, transceiver, the direction the party offered): the hub's answer to one offer
Transceivers = Iterable[tuple[str, Any, str]]


@dataclass(eq=False)
class _StockParty:
    remote_tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)
    senders: dict[str, RTCRtpSender] = field(default_factory=dict)
    recorder: MediaRecorder | None = None
    file: Any = None
    key: str | None = None
    started_at: float | None = None


class StockCall:
    """One session on the stock path: a relay between the parties and a recorder per party."""

    def __init__(self, session_id: str, storage: RecordingStorage, clock: Clock, key_prefix: str,
                 emit: Callable[[str, dict[str, Any]], None]) -> None:
        """``emit(kind, data)`` is the hub's event for this session."""
        self.session_id = session_id
        self.storage = storage
        self.clock = clock
        self.key_prefix = key_prefix
        self._emit = emit
        self.relay = MediaRelay()
        self._parties: dict[str, _StockParty] = {}

    def _party(self, name: str) -> _StockParty:
        return self._parties.setdefault(name, _StockParty())

    def wire(self, party: str, peer: str, transceivers: Transceivers, peer_has_connection: bool) -> None:
        """Relay a party's new connection: its tracks to the peer's senders, the peer's tracks to its own."""
        p, other = self._party(party), self._party(peer)
        p.remote_tracks.clear()
        p.senders.clear()
        for kind, t, offer_dir in transceivers:
            if offer_dir in ("recvonly", "sendrecv") and t.receiver.track is not None:
                p.remote_tracks[kind] = t.receiver.track
            if offer_dir in ("sendonly", "sendrecv"):
                p.senders[kind] = t.sender
                if kind in other.remote_tracks:
                    t.sender.replaceTrack(self.relay.subscribe(other.remote_tracks[kind]))
        for kind, track in p.remote_tracks.items():
            sender = other.senders.get(kind)
            if sender is not None and peer_has_connection:
                sender.replaceTrack(self.relay.subscribe(track))

    def tap(self, party: str, *, format: str | None, on_close: Any) -> StockVideoTap:
        return StockVideoTap(self.relay, self._party(party).remote_tracks.get("video"), format=format,
                             on_close=on_close)

    async def start_recording(self, party: str, ended: Callable[[], bool]) -> None:
        """Record a party that has connected (once per session; ``ended()``: the session has ended)."""
        p = self._party(party)
        if p.recorder is not None or not p.remote_tracks or ended():
            return
        size = None
        if "video" in p.remote_tracks:
            # MediaRecorder sizes its video stream from the first frame, but if an
            # audio packet is muxed first the header is written with no size and
            # no video is ever recorded: learn the size before starting it.
            probe_track = self.relay.subscribe(p.remote_tracks["video"], buffered=False)
            try:
                first = await asyncio.wait_for(probe_track.recv(), 10.0)
                size = (first.width, first.height)
            except (asyncio.TimeoutError, Exception):
                log.warning("stock recording of %s/%s: no video frame", self.session_id, party)
            finally:
                probe_track.stop()
            if ended() or p.recorder is not None:
                return
        key, fileobj = open_new_recording(self.storage, f"{self.key_prefix}{self.session_id}/{party}", "webm")
        recorder = MediaRecorder(fileobj, format="webm")
        for track in p.remote_tracks.values():
            proxy = self.relay.subscribe(track)
            recorder.addTrack(proxy)
            if track.kind == "video" and size is not None:
                context = recorder._MediaRecorder__tracks[proxy]  # noqa: SLF001 - see above
                context.stream.width, context.stream.height = size
                context.started = True  # so it does not resize an open encoder
        p.recorder, p.file, p.key = recorder, fileobj, key
        p.started_at = self.clock.now()
        await recorder.start()
        self._emit(
            "media.recording_started",
            {
                "party": party,
                "storage_key": key,
                "container": "webm",
                "video_codec": "vp8" if "video" in p.remote_tracks else None,
                "audio_codec": "opus" if "audio" in p.remote_tracks else None,
                "started_at": p.started_at,
            },
        )

    async def end_party(self, party: str, executor: Callable[[], Executor]) -> RecordingResult | None:
        """The session has ended: finalise the party's recording (if one was started) and drop its tracks."""
        p = self._party(party)
        result = None
        if p.recorder is not None or p.file is not None:
            result = await self._finish_recording(party, p, executor)
        p.remote_tracks.clear()
        p.senders.clear()
        return result

    async def _finish_recording(self, party: str, p: _StockParty,
                                executor: Callable[[], Executor]) -> RecordingResult | None:
        recorder, fileobj, key = p.recorder, p.file, p.key
        p.recorder = p.file = None
        if recorder is not None:
            try:
                await recorder.stop()
            except Exception:
                log.exception("stock recorder stop failed")
        if fileobj is not None:
            fileobj.close()
        if key is None:
            return None
        loop = asyncio.get_running_loop()

        def finish() -> Any:
            stored = self.storage.finalize(key)
            if stored.size_bytes == 0:
                return stored, None
            with self.storage.open_read(key) as fh:
                return stored, probe(fh)

        try:
            stored, info = await loop.run_in_executor(executor(), finish)
        except Exception:
            log.exception("stock recording %s unreadable", key)
            return None
        result = RecordingResult(
            party=party,
            storage_key=key,
            container="webm",
            video_codec=info.video_codec if info else None,
            audio_codec=info.audio_codec if info else None,
            started_at=float(p.started_at or 0.0),
            duration_s=round(info.duration_s, 3) if info else 0.0,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            video_frames=info.video_frames if info else 0,
            audio_frames=info.audio_frames if info else 0,
            finalised_at=self.clock.now(),
        )
        self._emit("media.recording_finalised", result.as_dict())
        return result


class StockVideoTap:
    """The stock path's tap: frames are decoded anyway; relay them."""

    def __init__(self, relay: Any, track: Any, *, format: str | None = None, on_close: Any = None) -> None:
        self._relay = relay
        self._track = track
        self._proxy: Any = None
        self._format = format
        self._closed = track is None
        self._on_close = on_close

    @property
    def active(self) -> bool:
        return self._proxy is not None

    def __aiter__(self) -> StockVideoTap:
        return self

    async def __anext__(self) -> Any:
        from aiortc.mediastreams import MediaStreamError

        if self._closed:
            raise StopAsyncIteration
        if self._proxy is None:
            self._proxy = self._relay.subscribe(self._track, buffered=False)
        try:
            frame = await self._proxy.recv()
        except MediaStreamError:
            self.close()
            raise StopAsyncIteration from None
        if self._format:
            return frame.to_ndarray(format=self._format)
        return frame

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    async def __aenter__(self) -> StockVideoTap:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
