"""Encoded-frame forwarding between aiortc peer connections (no decode, no re-encode).

Receive side: aiortc's :class:`RTCRtpReceiver` depacketises RTP into whole encoded
frames (its jitter buffer) and hands each one to a decoder thread through a
queue. :func:`intercept_encoded_frames` swaps that queue for a hook, so each
encoded frame reaches a callback on the event loop instead and nothing is
decoded. (The receiver still starts its decoder thread; the hook makes it exit
at once, so no thread stays behind.)

Send side: an :class:`RTCRtpSender` whose track yields :class:`av.Packet` only
packetises (``Encoder.pack``), it does not encode. :class:`ForwardTrack` is such a
track, fed with the other party's encoded frames; it rebases timestamps so a
reconnecting source does not make the RTP clock jump back, gates video on a key
frame, and falls back to decode + (aiortc) encode only when the source codec
differs from the one negotiated with this receiver.

Keyframe requests: a PLI/FIR arriving at our sender is turned into a PLI to the
original sender (:meth:`MediaSource.request_keyframe`), rate limited.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .codecs import codec_key, is_keyframe

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.3
VIDEO_QUEUE_MAX = 45  # ~3 s at 15 fps: beyond that, drop and resync on a key frame
AUDIO_QUEUE_MAX = 50  # 1 s of 20 ms packets: beyond that, drop the oldest


@dataclass(slots=True)
class EncodedFrame:
    kind: str  # "audio" | "video"
    codec: RTCRtpCodecParameters
    key: str  # codec key: vp8, h264, opus, pcmu, ...
    data: bytes
    timestamp: int  # RTP ticks, 0 at this receiver's first frame (aiortc's TimestampMapper)
    keyframe: bool
    arrival: float  # time.monotonic() when the frame was complete
    generation: int  # bumps each time the source's receiver or network path changes (reconnect, ICE restart)

    @property
    def clock_rate(self) -> int:
        return self.codec.clockRate


class FrameSink(Protocol):
    def push(self, frame: EncodedFrame) -> None: ...


# ---------------------------------------------------------------------------
# receive side


class _DecoderQueueHook:
    """Stands in for RTCRtpReceiver's decoder queue (a ``queue.Queue``)."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[RTCRtpCodecParameters, JitterFrame], None]) -> None:
        self._callback = callback

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        # called on the event loop by RTCRtpReceiver._handle_rtp_packet
        if item is None:
            return
        codec, frame = item
        try:
            self._callback(codec, frame)
        except Exception:  # never break aiortc's receive path
            log.exception("encoded frame callback failed")

    def get(self, *args: Any, **kwargs: Any) -> None:
        # called once by the receiver's decoder thread: None tells it to exit now
        return None


def intercept_encoded_frames(
    receiver: RTCRtpReceiver,
    callback: Callable[[RTCRtpCodecParameters, JitterFrame], None],
) -> None:
    """Route the receiver's complete encoded frames to ``callback`` instead of a decoder.

    Must be called before the receiver starts (i.e. before the answer/offer is
    applied locally); ``callback(codec, JitterFrame)`` runs on the event loop.
    """
    attr = "_RTCRtpReceiver__decoder_queue"
    if not hasattr(receiver, attr):
        raise RuntimeError("this aiortc version has no decoder queue to intercept")
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("receiver already started")
    setattr(receiver, attr, _DecoderQueueHook(callback))


def remote_media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC the remote end sends media with (not its RTX SSRC), if seen yet."""
    active: dict[int, Any] = getattr(receiver, "_RTCRtpReceiver__active_ssrc", {})
    rtx: dict[int, int] = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {})
    best = None
    for ssrc, seen in active.items():
        if ssrc in rtx:
            continue
        if best is None or seen > best[0]:
            best = (seen, ssrc)
    return best[1] if best else None


class MediaSource:
    """One party's incoming audio or video, for the whole session.

    Survives reconnects: each new receiver is attached with a new generation and
    frames from older receivers are ignored. Subscribers (forward tracks, the
    recorder, taps) get every encoded frame synchronously via ``push``.
    """

    def __init__(
        self,
        party: str,
        kind: str,
        *,
        spawn: Callable[[Any], None],
        on_keyframe_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self.party = party
        self.kind = kind
        self.generation = 0
        self.codec: RTCRtpCodecParameters | None = None
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.plis_sent = 0
        self.last_arrival: float | None = None  # time.monotonic() of the newest frame
        self.last_keyframe: float | None = None  # ... and of the newest key frame
        self._subscribers: list[FrameSink] = []
        self._receiver: RTCRtpReceiver | None = None
        self._last_pli = -1e9
        self._spawn = spawn
        self._on_keyframe_request = on_keyframe_request

    @property
    def key(self) -> str | None:
        return codec_key(self.codec) if self.codec else None

    @property
    def attached(self) -> bool:
        return self._receiver is not None

    def subscribe(self, sink: FrameSink) -> None:
        if sink not in self._subscribers:
            self._subscribers.append(sink)

    def unsubscribe(self, sink: FrameSink) -> None:
        try:
            self._subscribers.remove(sink)
        except ValueError:
            pass

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def attach(self, receiver: RTCRtpReceiver) -> None:
        self.generation += 1
        self._receiver = receiver
        self._last_pli = -1e9
        self.last_arrival = None  # a new connection: silence is measured from its first frame

        def on_frame(codec: RTCRtpCodecParameters, jf: JitterFrame) -> None:
            if receiver is self._receiver:
                self._on_frame(codec, jf, self.generation)

        intercept_encoded_frames(receiver, on_frame)

    def new_path(self) -> None:
        """The same receiver, after a gap on a new network path (ICE restart): subscribers start
        again on a key frame and re-anchor their timing, as after a new connection."""
        self.generation += 1
        self._last_pli = -1e9

    def detach(self, receiver: RTCRtpReceiver | None = None) -> None:
        if receiver is None or receiver is self._receiver:
            self._receiver = None
            self.generation += 1  # anything still in flight from it is ignored

    def close(self) -> None:
        self.detach()
        self._subscribers.clear()

    def _on_frame(self, codec: RTCRtpCodecParameters, jf: JitterFrame, generation: int) -> None:
        key = codec_key(codec)
        data = jf.data
        keyframe = is_keyframe(key, data) if self.kind == "video" else True
        self.codec = codec
        self.frames += 1
        self.bytes += len(data)
        self.last_arrival = time.monotonic()
        if keyframe and self.kind == "video":
            self.keyframes += 1
            self.last_keyframe = self.last_arrival
        frame = EncodedFrame(
            kind=self.kind,
            codec=codec,
            key=key,
            data=data,
            timestamp=jf.timestamp,
            keyframe=keyframe,
            arrival=self.last_arrival,
            generation=generation,
        )
        for sink in tuple(self._subscribers):
            try:
                sink.push(frame)
            except Exception:
                log.exception("media sink failed")

    def request_keyframe(self, by: str, reason: str) -> bool:
        """Send a PLI to the party's sender (rate limited). True if one was sent."""
        if self.kind != "video":
            return False
        receiver = self._receiver
        if receiver is None:
            return False
        now = time.monotonic()
        if now - self._last_pli < KEYFRAME_MIN_INTERVAL_S:
            return False
        ssrc = remote_media_ssrc(receiver)
        if ssrc is None:
            return False
        self._last_pli = now
        self.plis_sent += 1
        self._spawn(receiver._send_rtcp_pli(ssrc))
        if self._on_keyframe_request is not None:
            self._on_keyframe_request(by, reason)
        return True


# ---------------------------------------------------------------------------
# send side


class ForwardTrack(MediaStreamTrack):
    """Feeds one of our senders with another party's encoded frames.

    Yields :class:`av.Packet` (sent as is) while the codecs match; otherwise
    decodes (in ``executor``) and yields frames for aiortc to encode.
    """

    def __init__(
        self,
        kind: str,
        sink_codec: RTCRtpCodecParameters,
        source: MediaSource,
        *,
        executor: Executor | None = None,
        to_party: str = "",
        on_mode: Callable[[str, str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.sink_codec = sink_codec
        self.sink_key = codec_key(sink_codec)
        self.source = source
        self.to_party = to_party
        self.mode: str | None = None  # "passthrough" | "transcode"
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self._executor = executor
        self._on_mode = on_mode
        self._queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue()
        self._pending: collections.deque[av.frame.Frame] = collections.deque()
        self._need_keyframe = kind == "video"
        self._push_generation: int | None = None
        self._decoder: Any = None
        self._decoder_key: str | None = None
        # timestamp rebasing
        self._generation: int | None = None
        self._offset = 0
        self._last_out: int | None = None
        self._last_wall = 0.0
        self._sink_rate = sink_codec.clockRate
        self._time_base = Fraction(1, self._sink_rate)
        source.subscribe(self)

    # subscriber side (event loop, synchronous)
    def push(self, frame: EncodedFrame) -> None:
        if self.readyState != "live":
            return
        self.frames_in += 1
        if frame.generation != self._push_generation:
            # a new source connection: the decoder downstream needs a key frame
            self._push_generation = frame.generation
            self._need_keyframe = self.kind == "video"
        if self._need_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                self.source.request_keyframe(self.to_party, "forward_start")
                return
            self._need_keyframe = False
        q = self._queue
        if self.kind == "video" and q.qsize() >= VIDEO_QUEUE_MAX:
            self.dropped += q.qsize()
            while not q.empty():
                q.get_nowait()
            self._need_keyframe = True
            self.source.request_keyframe(self.to_party, "forward_overflow")
            if not frame.keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        elif self.kind == "audio" and q.qsize() >= AUDIO_QUEUE_MAX:
            q.get_nowait()
            self.dropped += 1
        q.put_nowait(frame)

    def downstream_keyframe_request(self) -> None:
        """Our receiver (the other end of this sender) sent PLI/FIR."""
        if self.mode != "transcode":
            self.source.request_keyframe(self.to_party, "pli")

    def _rebase(self, frame: EncodedFrame) -> int:
        ts = frame.timestamp
        if frame.clock_rate != self._sink_rate:
            ts = ts * self._sink_rate // frame.clock_rate
        if frame.generation != self._generation:
            self._generation = frame.generation
            if self._last_out is None:
                self._offset = -ts
            else:
                gap = max(1, int((frame.arrival - self._last_wall) * self._sink_rate))
                self._offset = self._last_out + gap - ts
        out = ts + self._offset
        if self._last_out is not None and out <= self._last_out:
            out = self._last_out + 1
        self._last_out = out
        self._last_wall = frame.arrival
        return out

    def _set_mode(self, mode: str, frame: EncodedFrame) -> None:
        if mode != self.mode:
            self.mode = mode
            if self._on_mode is not None:
                self._on_mode(mode, frame.key, self.sink_key)

    async def recv(self) -> av.Packet | av.frame.Frame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._pending:
                self.frames_out += 1
                return self._pending.popleft()
            frame = await self._queue.get()
            if frame is None:
                raise MediaStreamError
            pts = self._rebase(frame)
            if frame.key == self.sink_key:
                self._set_mode("passthrough", frame)
                packet = av.Packet(frame.data)
                packet.pts = pts
                packet.time_base = self._time_base
                self.frames_out += 1
                return packet
            # codecs differ: decode here, aiortc's sender encodes
            self._set_mode("transcode", frame)
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(self._executor, self._decode, frame, pts)
            self._pending.extend(decoded)

    def _decode(self, frame: EncodedFrame, pts: int) -> list[av.frame.Frame]:
        if self._decoder is None or self._decoder_key != frame.key:
            self._decoder = get_decoder(frame.codec)
            self._decoder_key = frame.key
        ts = pts * frame.clock_rate // self._sink_rate
        try:
            frames = self._decoder.decode(JitterFrame(frame.data, ts))
        except av.FFmpegError:
            return []
        if self.kind == "video":
            for f in frames:
                f.pts = pts
                f.time_base = self._time_base
        return frames

    def stop(self) -> None:
        if self.readyState == "live":
            self.source.unsubscribe(self)
            self._queue.put_nowait(None)
            self._pending.clear()
            self._decoder = None
        super().stop()


# aiortc internals the hub relies on (aiortc is pinned to a tested range in pyproject.toml):
# (class, attribute, where it must appear)
AIORTC_HOOKS = (
    (RTCRtpReceiver, "_RTCRtpReceiver__decoder_queue", "init"),  # intercept_encoded_frames
    (RTCRtpReceiver, "_RTCRtpReceiver__decoder_thread", "init"),
    (RTCRtpReceiver, "_RTCRtpReceiver__active_ssrc", "init"),  # remote_media_ssrc
    (RTCRtpReceiver, "_RTCRtpReceiver__rtx_ssrc", "init"),
    (RTCRtpReceiver, "_send_rtcp_pli", "class"),  # MediaSource.request_keyframe
    (RTCRtpSender, "_send_keyframe", "class"),  # hook_sender_keyframes
)


def missing_aiortc_hooks() -> list[str]:
    """The aiortc internals the hub uses (here, in negotiation and in ICE restart) that the installed
    aiortc lacks (checked at start)."""
    from aiortc import RTCRtpTransceiver

    from .ice_restart import HOOKS as ICE_RESTART_HOOKS

    hooks = AIORTC_HOOKS + ICE_RESTART_HOOKS + (
        (RTCRtpTransceiver, "_codecs", "init"), (RTCRtpTransceiver, "_offerDirection", "init"))
    missing = []
    for cls, name, where in hooks:
        present = (name in cls.__init__.__code__.co_names) if where == "init" else hasattr(cls, name)
        if not present:
            missing.append(f"{cls.__name__}.{name}")
    return missing


def hook_sender_keyframes(sender: RTCRtpSender, track: ForwardTrack) -> None:
    """Make PLI/FIR received by ``sender`` reach the original sender of ``track``."""

    def send_keyframe() -> None:
        RTCRtpSender._send_keyframe(sender)  # an encoder (transcoding) honours this
        track.downstream_keyframe_request()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


UDP_RCVBUF = 2 * 1024 * 1024
UDP_SNDBUF = 1024 * 1024


def tune_socket_buffers(pc: Any, rcvbuf: int = UDP_RCVBUF, sndbuf: int = UDP_SNDBUF) -> int:
    """Enlarge the UDP buffers of a peer connection's ICE sockets (after gathering).

    The Linux default (~208 KiB) holds well under a second of a few video
    streams; a busy event loop then drops packets in the kernel (RcvbufErrors).
    The kernel caps the sizes at net.core.rmem_max / wmem_max. Returns the
    number of sockets tuned.
    """
    import socket

    tuned = 0
    seen: set[int] = set()
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    sctp = getattr(pc, "sctp", None)
    if sctp is not None:
        transports.append(sctp.transport)
    for dtls in transports:
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        for protocol in getattr(connection, "_protocols", []) or []:
            transport = getattr(protocol, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is None or sock.fileno() in seen:
                continue
            seen.add(sock.fileno())
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
                tuned += 1
            except Exception:  # noqa: BLE001 - best effort (other loops' socket wrappers)
                pass
    return tuned
