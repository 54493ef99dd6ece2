"""ICE input from real browsers, made usable by a server that is not on their network (pure).

Browsers hide their addresses: Firefox with its default privacy settings, and
Chromium without a camera permission, put only mDNS host candidates
(``<uuid>.local``) in their offers, often followed by ``a=end-of-candidates``
once gathering is done. A server cannot resolve those names (mDNS is link
local), and aioice, told that no other candidates will come, prunes the
component and gathers none of its own: the answer has no candidates and ICE
fails at once.

What works instead (and is what SFUs do): ignore mDNS candidates, and do not
pass on end-of-candidates while no usable candidate arrived. The browser then
checks the hub's own candidates (in the answer and trickled as ``rtc.ice``),
and the hub learns the browser's address from those checks as a
peer-reflexive candidate (RFC 8445 7.3.1.3). A party that still never connects
is caught by the hub's connect watchdog, never left as a silent dead call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

MAX_CANDIDATE_CHARS = 1024
_MDNS = re.compile(r"^[0-9a-z-]+\.local\.?$", re.IGNORECASE)
_DIGITS = re.compile(r"^[0-9]{1,10}$", re.ASCII)


class CandidateError(ValueError):
    """A candidate that is not valid ICE syntax (typed error for the client)."""


def is_mdns(host: str) -> bool:
    return bool(_MDNS.match(host))


@dataclass(frozen=True)
class OfferIce:
    """What :func:`sanitize_offer` kept and dropped."""

    sdp: str
    usable: int  # candidates kept
    mdns_dropped: int
    end_of_candidates: bool  # the offer said no more candidates would come
    end_held: bool  # ... and the hub will not tell aioice so (nothing usable yet)


def sanitize_offer(sdp: str) -> OfferIce:
    """Drop mDNS candidates; drop ``end-of-candidates`` if no usable (UDP) candidate is left."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    usable = mdns = 0
    end = False
    for line in lines:
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) > 4 and is_mdns(parts[4]):
                mdns += 1
                continue
            if len(parts) > 2 and parts[2].lower() == "udp":
                usable += 1
        elif line.strip() == "a=end-of-candidates":
            end = True
        kept.append(line)
    held = end and usable == 0
    if held:
        kept = [line for line in kept if line.strip() != "a=end-of-candidates"]
    return OfferIce("\r\n".join(kept), usable, mdns, end, held)


@dataclass(frozen=True)
class TrickledCandidate:
    """A parsed ``rtc.ice`` candidate; ``ice`` is None for end-of-candidates."""

    ice: RTCIceCandidate | None
    ignored: str | None = None  # why a valid candidate cannot be used: "mdns" | "tcp"

    @property
    def end(self) -> bool:
        return self.ice is None and self.ignored is None


def parse_candidate(candidate: dict[str, Any] | None) -> TrickledCandidate:
    """``{candidate, sdpMid, sdpMLineIndex}`` as browsers send it; None or '' ends the candidates.

    Raises :class:`CandidateError` for anything that is not a candidate line.
    """
    if candidate is None or candidate.get("candidate") in (None, ""):
        return TrickledCandidate(None)
    text = candidate["candidate"]
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE_CHARS:
        raise CandidateError("the candidate must be a string of at most 1024 characters")
    text = text.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:"):]
    parts = text.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise CandidateError("not an ICE candidate line (foundation component transport priority address port typ type)")
    if not all(_DIGITS.fullmatch(parts[i]) for i in (1, 3, 5)):  # RFC 8839: component, priority, port are digits
        raise CandidateError("the candidate's component, priority and port must be decimal digits")
    if parts[2].lower() not in ("udp", "tcp"):
        raise CandidateError(f"unknown transport {parts[2][:16]!r}")
    try:
        ice = candidate_from_sdp(text)
        int(ice.port)
        candidate_to_sdp(ice)
    except (ValueError, IndexError, AssertionError, TypeError):
        raise CandidateError("not an ICE candidate line") from None
    if not 0 < ice.port < 65536 or ice.component not in (1, 2):
        raise CandidateError("the candidate's port or component is out of range")
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    ice.sdpMid = mid if isinstance(mid, str) else None
    ice.sdpMLineIndex = index if isinstance(index, int) and not isinstance(index, bool) else None
    if ice.sdpMid is None and ice.sdpMLineIndex is None:
        ice.sdpMLineIndex = 0
    if ice.protocol.lower() != "udp":
        return TrickledCandidate(None, ignored="tcp")  # browsers trickle these too; aioice is UDP only
    if is_mdns(ice.ip):
        return TrickledCandidate(None, ignored="mdns")
    return TrickledCandidate(ice)


def candidate_message(ice: RTCIceCandidate | None) -> dict[str, Any] | None:
    """A local candidate as the browser's ``RTCIceCandidateInit`` (None: end-of-candidates)."""
    if ice is None:
        return None
    return {"candidate": "candidate:" + candidate_to_sdp(ice), "sdpMid": ice.sdpMid,
            "sdpMLineIndex": ice.sdpMLineIndex}
