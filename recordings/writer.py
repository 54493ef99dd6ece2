"""Crash-safe Matroska/WebM writer for already-encoded packets (no re-encode).

Each packet is muxed as it arrives (PyAV, stream copy). The Matroska muxer keeps
the current cluster in memory and writes it out whole; we cap clusters at
``cluster_ms`` (default 1 s) and flush the I/O layer after every packet, so the
file on disk is never more than about one cluster behind. The file object is
unbuffered (each write is a ``write(2)``), so killing the process loses at most
the last cluster; :meth:`MatroskaPacketWriter.sync` adds an ``fsync`` for power
loss and is called periodically by the media hub.

A file cut short this way has no Duration and no Cues but is still a valid
Matroska stream: PyAV/FFmpeg and browsers read it up to the last full cluster.
:func:`remux` turns such a file into a finalised one (stream copy) when needed.

On a normal :meth:`close` the muxer writes Cues and patches the header's
Duration, so browsers can show the duration and seek.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

import av

MS = Fraction(1, 1000)

# codecs we mux without touching (ffmpeg names)
VIDEO_CODECS = {"vp8", "vp9", "h264"}
AUDIO_CODECS = {"opus"}
WEBM_CODECS = {"vp8", "vp9", "opus"}


@dataclass
class StreamSpec:
    kind: str  # "video" | "audio"
    codec: str  # ffmpeg codec name: vp8, vp9, h264, opus
    width: int = 0
    height: int = 0
    sample_rate: int = 48000
    channels: int = 2


@dataclass
class _StreamState:
    spec: StreamSpec
    stream: av.stream.Stream
    packets: int = 0
    keyframes: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    end_ms: int | None = None


def container_for(codecs: list[str]) -> str:
    """webm when every codec is allowed there (Chromium plays it), else matroska."""
    return "webm" if all(c in WEBM_CODECS for c in codecs) else "matroska"


class MatroskaPacketWriter:
    """Mux encoded audio/video packets into one Matroska/WebM file, crash-safely."""

    def __init__(
        self,
        fileobj: BinaryIO,
        streams: list[StreamSpec],
        *,
        cluster_ms: int = 1000,
        interleave_ms: int = 500,
    ) -> None:
        if not streams:
            raise ValueError("at least one stream is needed")
        kinds = [s.kind for s in streams]
        if len(set(kinds)) != len(kinds):
            raise ValueError("one stream per kind")
        for s in streams:
            allowed = VIDEO_CODECS if s.kind == "video" else AUDIO_CODECS
            if s.codec not in allowed:
                raise ValueError(f"cannot record {s.kind} codec {s.codec!r} without re-encoding")
        self.format = container_for([s.codec for s in streams])
        self.extension = "webm" if self.format == "webm" else "mkv"
        self._file = fileobj
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._container = av.open(
            fileobj,
            mode="w",
            format=self.format,
            container_options={
                "cluster_time_limit": str(int(cluster_ms)),
                "cluster_size_limit": str(4 * 1024 * 1024),
                "flush_packets": "1",
                "max_interleave_delta": str(int(interleave_ms) * 1000),
            },
        )
        self._streams: dict[str, _StreamState] = {}
        try:
            for spec in streams:
                self._streams[spec.kind] = _StreamState(spec, self._add_stream(spec))
        except Exception:
            self._container.close()
            raise

    def _add_stream(self, spec: StreamSpec) -> av.stream.Stream:
        if spec.kind == "video":
            width, height = spec.width or 640, spec.height or 480
            return self._container.add_mux_stream(spec.codec, width=width, height=height)
        # Opus needs an OpusHead as CodecPrivate: open a libopus encoder context
        # only so that it produces one. Nothing is ever encoded with it.
        stream = self._container.add_stream("libopus", rate=spec.sample_rate)
        stream.layout = "stereo" if spec.channels == 2 else "mono"
        return stream

    @property
    def kinds(self) -> list[str]:
        return list(self._streams)

    def write(
        self,
        kind: str,
        data: bytes,
        pts_ms: int,
        *,
        keyframe: bool = True,
        duration_ms: int | None = None,
    ) -> int:
        """Mux one encoded frame at ``pts_ms`` (ms from the recording start).

        Timestamps are made strictly increasing per stream; returns the pts used.
        """
        if self._closed:
            raise ValueError("writer is closed")
        state = self._streams[kind]
        if state.last_ms is not None and pts_ms <= state.last_ms:
            pts_ms = state.last_ms + 1
        pts_ms = max(0, int(pts_ms))
        packet = av.Packet(data)
        packet.pts = packet.dts = pts_ms
        packet.time_base = MS
        if duration_ms:
            packet.duration = int(duration_ms)
        packet.is_keyframe = bool(keyframe)
        packet.stream = state.stream
        self._container.mux_one(packet)
        self._dirty = True
        state.packets += 1
        state.keyframes += 1 if keyframe else 0
        if state.first_ms is None:
            state.first_ms = pts_ms
        state.last_ms = pts_ms
        state.end_ms = pts_ms + (duration_ms or 0)
        return pts_ms

    def sync(self) -> bool:
        """fsync the file if anything was written since the last sync (thread-safe)."""
        with self._lock:
            if self._closed or not self._dirty:
                return False
            self._dirty = False
            try:
                os.fsync(self._file.fileno())
            except (OSError, AttributeError, ValueError):
                return False
            return True

    def stats(self) -> dict[str, dict[str, int | None]]:
        return {
            kind: {
                "packets": s.packets,
                "keyframes": s.keyframes,
                "first_ms": s.first_ms,
                "last_ms": s.last_ms,
            }
            for kind, s in self._streams.items()
        }

    @property
    def duration_s(self) -> float:
        """Time from the first to the end of the last packet written, over all streams."""
        firsts = [s.first_ms for s in self._streams.values() if s.first_ms is not None]
        ends = [s.end_ms for s in self._streams.values() if s.end_ms is not None]
        if not firsts:
            return 0.0
        # a video frame lasts until the next one: count the last one as ~1 frame
        video = self._streams.get("video")
        if video and video.packets > 1 and video.end_ms is not None and video.first_ms is not None:
            frame_ms = (video.last_ms - video.first_ms) / (video.packets - 1)
            ends.append(int(video.last_ms + frame_ms))
        return max(0.0, (max(ends) - min(firsts)) / 1000.0)

    def codec(self, kind: str) -> str | None:
        state = self._streams.get(kind)
        return state.spec.codec if state else None

    def packets(self, kind: str) -> int:
        state = self._streams.get(kind)
        return state.packets if state else 0

    def close(self) -> None:
        """Write Cues and the Duration, and close the file."""
        if self._closed:
            return
        try:
            self._container.close()
        finally:
            with self._lock:
                self._closed = True
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except (OSError, AttributeError, ValueError):
                    pass
                self._file.close()


@dataclass
class ProbeResult:
    container: str
    duration_s: float
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    video_frames: int = 0
    audio_frames: int = 0
    video_keyframes: int = 0
    first_s: dict[str, float] = field(default_factory=dict)
    last_s: dict[str, float] = field(default_factory=dict)
    header_duration_s: float | None = None


def probe(source: str | os.PathLike[str] | BinaryIO) -> ProbeResult:
    """Read every packet (no decoding) and report codecs, frame counts and duration.

    Works on files cut short by a crash (no Duration/Cues in the header).
    """
    src = os.fspath(source) if isinstance(source, (str, os.PathLike)) else source
    with av.open(src, mode="r") as ic:
        result = ProbeResult(container=ic.format.name.split(",")[0], duration_s=0.0)
        if ic.duration is not None:
            result.header_duration_s = ic.duration / 1_000_000
        for stream in ic.streams:
            if stream.type == "video":
                result.video_codec = stream.codec_context.name
                result.width = stream.codec_context.width or None
                result.height = stream.codec_context.height or None
            elif stream.type == "audio":
                result.audio_codec = stream.codec_context.name
        ends: list[float] = []
        firsts: list[float] = []
        for packet in ic.demux():
            if packet.pts is None or packet.size == 0:
                continue
            kind = packet.stream.type
            t = float(packet.pts * packet.time_base)
            end = t + float((packet.duration or 0) * packet.time_base)
            result.first_s.setdefault(kind, t)
            result.last_s[kind] = t
            if kind == "video":
                result.video_frames += 1
                result.video_keyframes += 1 if packet.is_keyframe else 0
            elif kind == "audio":
                result.audio_frames += 1
            firsts.append(t)
            ends.append(end)
        if firsts:
            result.duration_s = max(ends) - min(firsts)
        return result


def remux(
    source: str | os.PathLike[str] | BinaryIO,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    format: str | None = None,
    faststart: bool = False,
) -> None:
    """Stream-copy ``source`` into a finalised file (no re-encode).

    Default: the same Matroska/WebM family, now with Duration and Cues (e.g.
    after a crash). ``format="mp4"`` writes a fragmented MP4 a browser can play
    while it downloads (H.264 recordings: Chromium does not play Matroska);
    with ``faststart`` (``dest`` must be a path) a plain MP4 with its index first,
    which a browser seeks in with HTTP Range.
    """
    src = os.fspath(source) if isinstance(source, (str, os.PathLike)) else source
    dst = os.fspath(dest) if isinstance(dest, (str, os.PathLike)) else dest
    with av.open(src, mode="r") as ic:
        fmt = ic.format.name.split(",")[0]
        codecs = [s.codec_context.name for s in ic.streams if s.type in ("video", "audio")]
        out_fmt = format or (container_for(codecs) if fmt in ("matroska", "webm") else fmt)
        options = {}
        if out_fmt == "mp4":
            options = {"movflags": "+faststart"} if faststart else {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        with av.open(dst, mode="w", format=out_fmt, container_options=options) as oc:
            mapping = {}
            for s in ic.streams:
                if s.type in ("video", "audio"):
                    mapping[s.index] = oc.add_stream_from_template(s)
            for packet in ic.demux():
                if packet.dts is None or packet.stream.index not in mapping:
                    continue
                packet.stream = mapping[packet.stream.index]
                oc.mux(packet)
