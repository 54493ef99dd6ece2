"""Small, allocation-free looks into encoded frames (no decoding)."""

from __future__ import annotations

from fractions import Fraction

from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

VIDEO_CLOCK = 90000


def codec_key(codec: RTCRtpCodecParameters | RTCRtpCodecCapability | str) -> str:
    """'video/VP8' -> 'vp8', 'audio/opus' -> 'opus', 'video/H264' -> 'h264'."""
    mime = codec if isinstance(codec, str) else codec.mimeType
    return mime.split("/")[-1].lower()


def time_base(codec: RTCRtpCodecParameters) -> Fraction:
    return Fraction(1, codec.clockRate)


def is_keyframe(key: str, data: bytes) -> bool:
    """Whether an encoded frame (as depacketised by aiortc) can start decoding."""
    if not data:
        return False
    if key == "vp8":
        # RFC 6386 9.1: frame tag bit 0 is 0 for a key frame
        return (data[0] & 0x01) == 0
    if key == "h264":
        return _h264_has_idr(data)
    return True  # audio: every frame stands alone


def _h264_has_idr(data: bytes) -> bool:
    # Annex B stream (aiortc's depayloader adds 00 00 00 01 start codes)
    i = 0
    n = len(data)
    found_sps = False
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            return found_sps
        nal_type = data[i + 3] & 0x1F
        if nal_type == 5:
            return True
        if nal_type == 7:
            found_sps = True
        i += 3


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header."""
    if len(data) < 10 or (data[0] & 0x01) != 0 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = (data[6] | (data[7] << 8)) & 0x3FFF
    height = (data[8] | (data[9] << 8)) & 0x3FFF
    return width, height


def video_dimensions(key: str, data: bytes) -> tuple[int, int] | None:
    """Dimensions of a key frame: parsed for VP8, decoded once for others."""
    if key == "vp8":
        return vp8_dimensions(data)
    import av

    if key != "h264":
        return None
    try:
        ctx = av.CodecContext.create("h264", "r")
        for frame in ctx.decode(av.Packet(data)):
            return frame.width, frame.height
        for frame in ctx.decode(None):
            return frame.width, frame.height
    except Exception:  # noqa: BLE001 - best effort, caller falls back
        return None
    return None


_SILK_HYBRID_MS = (10, 20, 40, 60)
_CELT_MS = (2.5, 5, 10, 20)


def opus_duration_ms(data: bytes) -> float:
    """Duration of one Opus packet from its TOC byte (RFC 6716 3.1); 20 ms if unsure."""
    if not data:
        return 20.0
    toc = data[0]
    config = toc >> 3
    if config < 12:
        frame_ms: float = _SILK_HYBRID_MS[config % 4]
    elif config < 16:
        frame_ms = 10 if config % 2 == 0 else 20
    else:
        frame_ms = _CELT_MS[config % 4]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = (data[1] & 0x3F) if len(data) > 1 else 1
    total = frame_ms * max(1, frames)
    return total if 0 < total <= 120 else 20.0
