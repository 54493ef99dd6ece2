"""WebSocket protocol v1: every message is a JSON object with a `type`.

Client messages are parsed into a discriminated union on `type`; a client may
add `id`, which the server echoes as `ref` in its reply. Server messages are
built with `server_message` so every outgoing frame has the same shape.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vbranch.domain.limits import INT_MAX

MessageId = Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=0)]
SessionId = Annotated[str, Field(min_length=1, max_length=32)]
Sdp = Annotated[str, Field(min_length=1, max_length=32 * 1024)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: MessageId | None = None


class Hello(_Msg):
    type: Literal["hello"]
    resume_token: Annotated[str, Field(max_length=128, pattern=r"^[\x21-\x7e]*$")] | None = None  # ASCII


class Ping(_Msg):
    type: Literal["ping"]


class RtcOffer(_Msg):
    type: Literal["rtc.offer"]
    sdp: Sdp
    session_id: SessionId | None = None  # agents name the call; customers have one
    ice_restart: bool = False  # the offer restarts ICE on the party's live connection (same DTLS)


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None


class RtcIce(_Msg):
    type: Literal["rtc.ice"]
    candidate: IceCandidate | None  # None: end of candidates
    session_id: SessionId | None = None


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(ge=0)] | None = None


class Consent(_Msg):
    type: Literal["consent"]
    recording: bool
    face: bool
    location: Location | None = None


class Leave(_Msg):
    type: Literal["leave"]


class AgentStatus(_Msg):
    type: Literal["agent.status"]
    status: Literal["available", "away"]


class OfferAccept(_Msg):
    type: Literal["offer.accept"]
    session_id: SessionId


class OfferDecline(_Msg):
    type: Literal["offer.decline"]
    session_id: SessionId


class FacecheckStart(_Msg):
    type: Literal["facecheck.start"]
    session_id: SessionId


class ChecklistMark(_Msg):
    type: Literal["checklist.mark"]
    session_id: SessionId
    step: Annotated[str, Field(min_length=1, max_length=64)]
    note: Annotated[str, Field(max_length=2000)] | None = None


class SessionEnd(_Msg):
    type: Literal["session.end"]
    session_id: SessionId
    disposition: Annotated[str, Field(min_length=1, max_length=64)]
    notes: Annotated[str, Field(max_length=8000)] | None = None
    override_reason: Annotated[str, Field(max_length=2000)] | None = None  # supervisors only


class WrapupDone(_Msg):
    type: Literal["wrapup.done"]


class AgentSetStatus(_Msg):
    """Supervisor: take an agent out of rotation (away) or put it back."""

    type: Literal["agent.set_status"]
    agent_id: Annotated[int, Field(ge=1)]
    status: Literal["available", "away"]


ClientMessage = Annotated[
    Union[Hello, Ping, RtcOffer, RtcIce, Consent, Leave, AgentStatus, OfferAccept, OfferDecline,
          FacecheckStart, ChecklistMark, SessionEnd, WrapupDone, AgentSetStatus],
    Field(discriminator="type"),
]
_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
CLIENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (Hello, Ping, RtcOffer, RtcIce, Consent, Leave, AgentStatus, OfferAccept, OfferDecline,
              FacecheckStart, ChecklistMark, SessionEnd, WrapupDone, AgentSetStatus)
)

# Which roles may send which message types (hello and ping are open to all).
ALLOWED: dict[str, frozenset[str]] = {
    "customer": frozenset({"hello", "ping", "rtc.offer", "rtc.ice", "consent", "leave"}),
    "agent": frozenset({"hello", "ping", "agent.status", "offer.accept", "offer.decline", "rtc.offer", "rtc.ice",
                        "facecheck.start", "checklist.mark", "session.end", "wrapup.done"}),
    "supervisor": frozenset({"hello", "ping", "agent.set_status", "session.end"}),
    "reviewer": frozenset({"hello", "ping"}),
    "admin": frozenset({"hello", "ping"}),
}


class ProtocolError(Exception):
    """A client message that cannot be accepted; `code` is part of the public protocol."""

    def __init__(self, code: str, message: str, ref: Any = None, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.details = details


MAX_DEPTH = 16  # no message nests deeper than a few levels (a candidate in a message)


class _Refused(ValueError):
    """Valid to Python's parser, not to the protocol (the message says why)."""


def _int(text: str) -> int:
    value = int(text)
    if not -INT_MAX <= value <= INT_MAX:
        raise _Refused("integer out of range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to infinity
        raise _Refused("number out of range")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """How deep a decoded value nests (iteratively: the check itself cannot overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def decode_frame(text: str) -> Any:
    """A client frame as strict JSON (no NaN or Infinity, integers the database can hold, nesting at most
    ``MAX_DEPTH``), or ProtocolError ``invalid_json``: what is accepted is what evidence can store."""
    try:
        raw = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise ProtocolError("invalid_json", f"the frame nests deeper than {MAX_DEPTH} levels") from None
    except _Refused as exc:
        raise ProtocolError("invalid_json", str(exc)) from None
    except ValueError:
        raise ProtocolError("invalid_json", "the frame is not valid JSON") from None
    if _depth(raw) > MAX_DEPTH:
        raise ProtocolError("invalid_json", f"the frame nests deeper than {MAX_DEPTH} levels")
    return raw


def parse_client_message(raw: Any) -> Any:
    """Parse a decoded JSON value into a client message, or raise ProtocolError."""
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    ref = raw.get("id") if isinstance(raw.get("id"), (str, int)) else None
    mtype = raw.get("type")
    if mtype is None:
        raise ProtocolError("invalid_message", "the message has no 'type'", ref)
    if not isinstance(mtype, str) or mtype not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {str(mtype)[:64]!r}", ref)
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "type", "problem": e["msg"],
                    "kind": e["type"]} for e in exc.errors()]
        missing = [d["field"] for d in details if d["kind"] == "missing"]
        if missing:
            raise ProtocolError("missing_field", f"missing field(s): {', '.join(missing)}", ref, details) from None
        fields = ", ".join(d["field"] for d in details)
        raise ProtocolError("invalid_field", f"invalid field(s): {fields}", ref, details) from None


def server_message(type_: str, ref: Any = None, **fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": type_, **fields}
    if ref is not None:
        msg["ref"] = ref
    return msg


def error_message(code: str, message: str, ref: Any = None, details: list[dict[str, Any]] | None = None) -> dict:
    msg = server_message("error", ref, code=code, message=message)
    if details:
        msg["details"] = details
    return msg
