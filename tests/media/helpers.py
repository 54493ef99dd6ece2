"""Shared helpers for media tests (and the signaling tests later).

The client side lives in :mod:`vbranch.media.synthetic` (pre-encoded clips,
paced tracks, :class:`ClientPeer`); this module adds call set-up and
resource-counting helpers for tests.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from dataclasses import dataclass
from typing import Any

from vbranch.media.hub import MediaHub
from vbranch.media.synthetic import (  # noqa: F401 - re-exported for other test suites
    Clip,
    ClientPeer,
    PatternVideoTrack,
    PreEncodedAudioTrack,
    PreEncodedVideoTrack,
    decode_frames,
    encode_opus_clip,
    encode_vp8_clip,
    make_clip,
)


def client_for(clip: Clip, **kwargs: Any) -> ClientPeer:
    """A client that sends the clip's pre-encoded VP8 video and Opus audio."""
    return ClientPeer(
        video=PreEncodedVideoTrack(clip.video, clip.fps),
        audio=PreEncodedAudioTrack(clip.audio),
        **kwargs,
    )


@dataclass
class Call:
    session_id: str
    customer: ClientPeer
    agent: ClientPeer

    async def close(self) -> None:
        await asyncio.gather(self.customer.close(), self.agent.close())


async def start_call(
    hub: MediaHub,
    session_id: str,
    clip: Clip,
    *,
    customer: ClientPeer | None = None,
    agent: ClientPeer | None = None,
    wait_frames: int = 5,
    timeout: float = 15.0,
) -> Call:
    """Connect a customer then an agent, and wait until each receives the other's video."""
    customer = customer or client_for(clip)
    agent = agent or client_for(clip)
    await customer.connect_to_hub(hub, session_id, "customer")
    await agent.connect_to_hub(hub, session_id, "agent")
    await asyncio.gather(customer.wait_connected(timeout), agent.wait_connected(timeout))
    if wait_frames:
        await asyncio.gather(
            customer.wait_frames("video", wait_frames, timeout),
            agent.wait_frames("video", wait_frames, timeout),
        )
    return Call(session_id, customer, agent)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if not t.done()])


def live_threads(exclude: str | None = None) -> int:
    """Running threads, optionally not counting those whose name starts with ``exclude``."""
    return len([t for t in threading.enumerate() if not (exclude and t.name.startswith(exclude))])


def count_instances(*types: type) -> dict[str, int]:
    gc.collect()
    counts = {t.__name__: 0 for t in types}
    for obj in gc.get_objects():
        for t in types:
            if type(obj) is t:
                counts[t.__name__] += 1
    return counts


class EventLog:
    """Collects a hub's on_event calls."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
        self.events.append((session_id, kind, data))

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            d for _, k, d in self.events if k == kind and all(d.get(key) == value for key, value in match.items())
        ]

    async def wait_for(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first event of ``kind`` (matching ``match``), waiting for it to come."""
        async with asyncio.timeout(timeout):
            while not (found := self.of(kind, **match)):
                await asyncio.sleep(0.05)
        return found[0]


# ---------------------------------------------------------------------------
# serving recordings to a browser (HTTP Range, like the replay endpoint)

import contextlib  # noqa: E402
import http.server  # noqa: E402
import re  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from recordings.storage import RecordingStorage, StorageError  # noqa: E402

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@contextlib.contextmanager
def serve_storage(storage: RecordingStorage, pages: dict[str, str] | None = None) -> Iterator[str]:
    """Serve ``/media/<key>`` from storage (with Range) and static ``pages`` on 127.0.0.1."""
    pages = pages or {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path in pages:
                body = pages[path].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not path.startswith("/media/"):
                self.send_error(404)
                return
            key = path[len("/media/") :]
            try:
                size = storage.size(key)
            except StorageError:
                self.send_error(404)
                return
            ctype = {"webm": "video/webm", "mp4": "video/mp4"}.get(key.rsplit(".", 1)[-1], "video/x-matroska")
            header = self.headers.get("Range")
            start, end, status = 0, size - 1, 200
            if header:
                match = _RANGE.match(header.strip())
                try:
                    if not match:
                        raise StorageError("bad range")
                    first = int(match.group(1)) if match.group(1) else None
                    last = int(match.group(2)) if match.group(2) else None
                    start, end = storage.resolve_range(key, first, last)
                    status = 206
                except StorageError:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            try:
                for chunk in storage.iter_range(key, start, end):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def write_h264_mkv(storage: Any, key: str, seconds: float, bitrate: int) -> list[tuple[bytes, bool]]:
    """A synthetic H.264 (320x240, 15 fps) + Opus Matroska recording written through the storage port;
    returns the video packets written (data, key frame)."""
    from recordings.writer import MatroskaPacketWriter, StreamSpec
    from vbranch.media.synthetic import encode_h264_clip

    video, audio = encode_h264_clip(320, 240, 15, seconds, bitrate), encode_opus_clip(seconds)
    writer = MatroskaPacketWriter(storage.open_write(key),
                                  [StreamSpec("video", "h264", 320, 240), StreamSpec("audio", "opus")])
    for i, (data, keyframe) in enumerate(video):
        writer.write("video", data, i * 1000 // 15, keyframe=keyframe)
    for j, data in enumerate(audio):
        writer.write("audio", data, j * 20, duration_ms=20)
    writer.close()
    return video
