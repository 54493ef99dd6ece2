"""Cheap synthetic media and client peers (tests, benchmarks, demos).

A clip is encoded once (VP8 video, Opus audio) and then looped as pre-encoded
packets, so a client peer costs almost nothing. Sent video starts and restarts
(after a keyframe request) at the clip's first frame, its only key frame.

:class:`ClientPeer` is an aiortc peer connection playing the customer's or the
agent's side: it offers audio+video sendrecv, sends pre-encoded (or live-encoded)
tracks and counts what it receives *without decoding* (optionally keeping the
encoded frames so a test can decode them).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .codecs import codec_key, is_keyframe
from .forwarding import intercept_encoded_frames, remote_media_ssrc, tune_socket_buffers
from .ice_restart import IceRestart, ice_transport, install_switchable_recv, restart_request, restarted_sdp

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


@dataclass
class Clip:
    video: list[tuple[bytes, bool]]  # (encoded frame, keyframe)
    audio: list[bytes]  # 20 ms Opus packets
    width: int
    height: int
    fps: int


def pattern_image(width: int, height: int, index: int, fps: int = 15) -> np.ndarray:
    """A moving picture with some texture (BGR), so P-frames are not trivially small."""
    t = index / fps
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x + 20 * t) % 256
    img[..., 1] = (y * 2 + 30 * t) % 256
    img[..., 2] = ((x // 16 + y // 16 + index) % 2) * 120
    size = max(16, min(width, height) // 5)
    cx = int((width - size) * (0.5 + 0.45 * math.sin(t * 1.7)))
    cy = int((height - size) * (0.5 + 0.45 * math.cos(t * 1.3)))
    img[cy : cy + size, cx : cx + size] = (255, 255, 255)
    rng = np.random.default_rng(index // fps)
    noise = rng.integers(0, 8, size=(height // 4, width // 4, 1), dtype=np.uint8)
    img += np.repeat(np.repeat(noise, 4, axis=0), 4, axis=1)[:height, :width]
    return img


def _video_encoder(codec: str, width: int, height: int, fps: int, bitrate: int) -> av.CodecContext:
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height = width, height
    enc.pix_fmt = "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    enc.bit_rate = bitrate
    enc.gop_size = 10_000  # one key frame at the start, then P-frames (like WebRTC)
    return enc


def _encode_pattern(enc: av.CodecContext, fps: int, seconds: float) -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    for i in range(max(1, int(seconds * fps))):
        frame = av.VideoFrame.from_ndarray(pattern_image(enc.width, enc.height, i, fps), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        for packet in enc.encode(frame):
            out.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in enc.encode(None):
        out.append((bytes(packet), bool(packet.is_keyframe)))
    assert out and out[0][1], "first frame must be a key frame"
    return out


def encode_vp8_clip(
    width: int = 640, height: int = 480, fps: int = 15, seconds: float = 4.0, bitrate: int = 500_000
) -> list[tuple[bytes, bool]]:
    """Encode a clip once: one key frame at the start, then P-frames (like WebRTC)."""
    enc = _video_encoder("libvpx", width, height, fps, bitrate)
    enc.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
        "undershoot-pct": "95",
    }
    return _encode_pattern(enc, fps, seconds)


def encode_h264_clip(
    width: int = 640, height: int = 480, fps: int = 15, seconds: float = 4.0, bitrate: int = 500_000
) -> list[tuple[bytes, bool]]:
    """Annex B H.264 (constrained baseline, SPS/PPS in band), one key frame at the start."""
    enc = _video_encoder("libx264", width, height, fps, bitrate)
    enc.profile = "Baseline"
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "31"}
    return _encode_pattern(enc, fps, seconds)


def encode_opus_clip(seconds: float = 2.0, freq: float = 440.0) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = 48000
    enc.layout = "stereo"
    enc.format = "s16"
    enc.bit_rate = 32000
    enc.time_base = AUDIO_TB
    enc.options = {"application": "voip"}
    out: list[bytes] = []
    n = int(seconds * 50)
    for i in range(n):
        t = (np.arange(960) + i * 960) / 48000
        mono = (np.sin(2 * np.pi * freq * t) * 6000).astype(np.int16)
        samples = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = AUDIO_TB
        out.extend(bytes(p) for p in enc.encode(frame))
    out.extend(bytes(p) for p in enc.encode(None))
    return out


def make_clip(width: int = 640, height: int = 480, fps: int = 15, seconds: float = 4.0, bitrate: int = 500_000) -> Clip:
    return Clip(
        video=encode_vp8_clip(width, height, fps, seconds, bitrate),
        audio=encode_opus_clip(max(1.0, seconds)),
        width=width,
        height=height,
        fps=fps,
    )


class _PacedTrack(MediaStreamTrack):
    """Yields pre-encoded packets in real time."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self._period = period
        self._start: float | None = None
        self._index = 0
        self.sent = 0
        self.paused = False

    async def _wait_next(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
        delay = self._start + self._index * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while self.paused:
            await asyncio.sleep(self._period)
            self._index += 1
        return self._index


class PreEncodedVideoTrack(_PacedTrack):
    kind = "video"

    def __init__(self, frames: list[tuple[bytes, bool]], fps: int = 15) -> None:
        super().__init__(1.0 / fps)
        self._frames = frames
        self._fps = fps
        self._pos = 0
        self._restart = False
        self.keyframes_sent = 0
        self.keyframe_requests = 0
        self.sent_log: list[tuple[float, bool]] | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._restart = True

    async def recv(self) -> av.Packet:
        index = await self._wait_next()
        if self._restart or self._pos >= len(self._frames):
            self._restart = False
            self._pos = 0
        data, key = self._frames[self._pos]
        self._pos += 1
        packet = av.Packet(data)
        packet.pts = index * 90000 // self._fps
        packet.time_base = VIDEO_TB
        self.sent += 1
        if key:
            self.keyframes_sent += 1
        if self.sent_log is not None:
            self.sent_log.append((time.monotonic(), key))
        return packet


class PreEncodedAudioTrack(_PacedTrack):
    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__(0.02)
        self._packets = packets

    async def recv(self) -> av.Packet:
        index = await self._wait_next()
        packet = av.Packet(self._packets[index % len(self._packets)])
        packet.pts = index * 960
        packet.time_base = AUDIO_TB
        self.sent += 1
        return packet


class PatternVideoTrack(VideoStreamTrack):
    """Raw frames for aiortc to encode itself (a client with a real encoder)."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self._w, self._h, self._fps = width, height, fps
        self._i = 0
        self._t0: float | None = None
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._i / self._fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(pattern_image(self._w, self._h, self._i, self._fps), format="bgr24")
        frame.pts = self._i * 90000 // self._fps
        frame.time_base = VIDEO_TB
        self._i += 1
        self.sent += 1
        return frame


@dataclass
class Received:
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    codec: str | None = None
    first_at: float | None = None
    last_at: float | None = None
    keyframe_times: list[float] = field(default_factory=list)
    kept: list[tuple[RTCRtpCodecParameters, bytes, int]] | None = None


class ClientPeer:
    """One party's aiortc peer connection to the hub (offerer), counting received frames."""

    def __init__(
        self,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        keep_frames: bool = False,
        video_codecs: list[str] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._remote_sdp: str | None = None  # the hub's newest answer (an ICE restart replaces it)
        self.video_track = video
        self.audio_track = audio
        self.received = {"audio": Received(), "video": Received()}
        self._events: dict[str, asyncio.Event] = {"audio": asyncio.Event(), "video": asyncio.Event()}
        self._receivers: dict[str, Any] = {}
        self._senders: dict[str, Any] = {}
        for kind, track in (("audio", audio), ("video", video)):
            transceiver = self.pc.addTransceiver(track if track is not None else kind, direction="sendrecv")
            if kind == "video" and video_codecs:
                from aiortc import RTCRtpSender

                caps = RTCRtpSender.getCapabilities("video").codecs
                prefs = [c for name in video_codecs for c in caps if codec_key(c) == name.lower()]
                prefs += [c for c in caps if codec_key(c) == "rtx"]
                transceiver.setCodecPreferences(prefs)
            rec = self.received[kind]
            if keep_frames:
                rec.kept = []
            intercept_encoded_frames(transceiver.receiver, self._counter(kind))
            self._receivers[kind] = transceiver.receiver
            self._senders[kind] = transceiver.sender
            if isinstance(track, PreEncodedVideoTrack):
                transceiver.sender._send_keyframe = track.request_keyframe  # answer PLI with a key frame

    def _counter(self, kind: str) -> Callable[[RTCRtpCodecParameters, Any], None]:
        rec = self.received[kind]
        event = self._events[kind]

        def on_frame(codec: RTCRtpCodecParameters, jf: Any) -> None:
            now = time.monotonic()
            key = codec_key(codec)
            rec.codec = key
            rec.frames += 1
            rec.bytes += len(jf.data)
            if kind == "video" and is_keyframe(key, jf.data):
                rec.keyframes += 1
                rec.keyframe_times.append(now)
            if rec.first_at is None:
                rec.first_at = now
            rec.last_at = now
            if rec.kept is not None:
                rec.kept.append((codec, jf.data, jf.timestamp))
            event.set()

        return on_frame

    async def connect(self, answer_for: Callable[[str], Awaitable[str]]) -> None:
        """Offer via ``answer_for(offer_sdp) -> answer_sdp`` (e.g. a hub's handle_offer)."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        tune_socket_buffers(self.pc)
        for t in self.pc.getTransceivers():  # before ICE connects, so DTLS can follow a restart
            install_switchable_recv(t.receiver.transport.transport)
        answer = await answer_for(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._remote_sdp = answer

    async def restart_ice(self, answer_for: Callable[[str], Awaitable[str]], timeout: float = 15.0) -> float:
        """Restart ICE as a browser's ``restartIce()`` does: new credentials and candidates on the same
        connection (its DTLS session and media carry on). Returns the seconds until it switched."""
        assert self._remote_sdp is not None, "connect first"
        restart = IceRestart(self.pc, controlling=True, ice_servers=[])
        offer = restarted_sdp(self.pc.localDescription.sdp, *restart.local_parameters, await restart.gather())
        answer = await answer_for(offer)
        await restart.start(restart_request(self._remote_sdp, answer))
        if not await restart.wait(timeout):
            await restart.cancel()
            raise TimeoutError("the ICE restart did not connect")
        self._remote_sdp = answer
        return time.monotonic() - restart.started

    async def connect_to_hub(self, hub: Any, session_id: str, party: str) -> None:
        await self.connect(lambda sdp: hub.handle_offer(session_id, party, sdp))

    def lose_path(self) -> None:
        """The network path is gone (test fault injection): the connection's ICE sockets stay open
        but nothing more is sent or taken in either way, as when a phone leaves a Wi-Fi network;
        nothing tells the DTLS session or the hub. An ICE restart brings it back on new sockets."""
        for protocol in list(ice_transport(self.pc)._connection._protocols):
            protocol.datagram_received = lambda data, addr: None
            transport = protocol.transport
            if transport is not None:
                transport.sendto = lambda data, addr=None: None

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline or self.pc.connectionState in ("failed", "closed"):
                raise TimeoutError(f"peer connection is {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def wait_frames(self, kind: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        rec = self.received[kind]
        while rec.frames < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"received {rec.frames}/{count} {kind} frames")
            self._events[kind].clear()
            try:
                await asyncio.wait_for(self._events[kind].wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def send_pli(self) -> bool:
        """Ask the hub (and through it the other party) for a key frame."""
        receiver = self._receivers["video"]
        ssrc = remote_media_ssrc(receiver)
        if ssrc is None:
            return False
        await receiver._send_rtcp_pli(ssrc)
        return True

    def sender_codec(self, kind: str) -> str | None:
        for t in self.pc.getTransceivers():
            if t.kind == kind and t._codecs:
                return codec_key(t._codecs[0])
        return None

    async def close(self) -> None:
        for track in (self.video_track, self.audio_track):
            if track is not None:
                track.stop()
        await self.pc.close()


def decode_frames(frames: list[tuple[RTCRtpCodecParameters, bytes, int]]) -> list[av.VideoFrame]:
    """Decode kept encoded video frames (starting at the first key frame)."""
    from aiortc.codecs import get_decoder
    from aiortc.jitterbuffer import JitterFrame

    decoded: list[av.VideoFrame] = []
    decoder = None
    for codec, data, ts in frames:
        if decoder is None:
            if not is_keyframe(codec_key(codec), data):
                continue
            decoder = get_decoder(codec)
        decoded.extend(decoder.decode(JitterFrame(data, ts)))
    return decoded
