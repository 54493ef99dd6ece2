"""Which codec each leg of a call uses, so the hub forwards without transcoding (pure, no I/O).

The hub answers each party's offer itself, so it decides what each party sends:
browsers send with the first codec of the answer, aiortc with the first of its
list. Forwarding passes encoded frames through unchanged only when both legs of
a call use the same codec, so the decision is per call, not per leg:

- The call's codec for a kind is the first of the hub's preference order that
  *both* parties offered (``choose``). When one party offers before the other,
  the hub holds its answer for a moment until the other's offer arrives
  (``MediaHub(pair_wait_s=...)``), so the order of arrival does not matter.
- Once chosen, a later offer (a reconnect, or a party that came after the
  wait) gets the call's codec if it offers it; only when it truly cannot does
  it get its own best and the hub transcodes (on the timeline).
- H.264 comes in variants (RFC 6184 profile-level-id, packetization-mode). The
  hub only accepts packetization-mode 1 (aiortc's packetiser); among the
  profiles it answers with the one the other leg uses, otherwise constrained
  baseline (42e0xx, what iPhones and WeChat on iOS send) before baseline, so a
  constrained-baseline stream reaches the other party under its own profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .codecs import codec_key

DEFAULT_VIDEO_ORDER = ("vp8", "h264")
AUDIO_ORDER = ("opus",)
H264_PROFILE_ORDER = ("42e0", "4200")  # constrained baseline, then baseline


def h264_profile(codec: RTCRtpCodecParameters) -> str:
    """'42e0' for profile-level-id 42e01f: profile_idc and constraint flags, not the level."""
    plid = str(codec.parameters.get("profile-level-id", "42e01f")).lower()
    return plid[:4]


def variant(codec: RTCRtpCodecParameters) -> str:
    """A codec with the parameters that must match on both legs: 'vp8', 'h264/42e0', 'opus'."""
    key = codec_key(codec)
    return f"h264/{h264_profile(codec)}" if key == "h264" else key


def offered(codecs: Iterable[RTCRtpCodecParameters]) -> list[str]:
    """The codec keys a party can use, in its order, without retransmission entries."""
    out: list[str] = []
    for c in codecs:
        key = codec_key(c)
        if key != "rtx" and key not in out:
            out.append(key)
    return out


def choose(preference: Sequence[str], mine: Sequence[str], peer: Sequence[str] | None,
           call_codec: str | None) -> str | None:
    """The codec this party should use.

    ``call_codec`` (already chosen for the call) wins if this party offers it;
    else the first preferred codec both offer; else this party's best (the
    hub will transcode). None if the party offers nothing usable.
    """
    if call_codec and call_codec in mine:
        return call_codec
    ranked = [c for c in preference if c in mine] + [c for c in mine if c not in preference]
    if peer is not None:
        for c in ranked:
            if c in peer:
                return c
    return ranked[0] if ranked else None


def prefer_codecs(codecs: list[RTCRtpCodecParameters], order: Sequence[str],
                  peer_variant: str | None = None) -> list[RTCRtpCodecParameters]:
    """Reorder negotiated codecs so the first match of ``order`` comes first.

    aiortc sends with ``codecs[0]`` and browsers send with the answer's first
    codec, so this picks the codec used both ways. Among variants of one codec
    (H.264 profiles) ``peer_variant`` comes first, then constrained baseline.
    Retransmission (RTX) entries follow their codec.
    """
    # the first mention counts; codecs not in ``order`` come after every one that is
    rank = {key: i for i, key in enumerate(dict.fromkeys(k.lower() for k in order))}
    variants = [peer_variant] if peer_variant else []
    variants += [f"h264/{p}" for p in H264_PROFILE_ORDER]

    def sort_key(c: RTCRtpCodecParameters) -> tuple[int, int]:
        v = variant(c)
        return rank.get(codec_key(c), len(rank)), variants.index(v) if v in variants else len(variants)

    base = [c for c in codecs if codec_key(c) != "rtx"]
    rtx = [c for c in codecs if codec_key(c) == "rtx"]
    base.sort(key=sort_key)  # stable
    result: list[RTCRtpCodecParameters] = []
    for c in base:
        result.append(c)
        result.extend(r for r in rtx if r.parameters.get("apt") == c.payloadType)
    return result
