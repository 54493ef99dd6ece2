"""The WebSocket endpoint /ws: authentication, framing limits, rate limit, typed errors.

It knows nothing of queues or calls: parsed messages go to the handler (the
Coordinator), whose ProtocolErrors come back to the client as typed errors.

Messages of one connection are handled in order, except ``rtc.offer``: its
answer may wait for the other party's offer (see vbranch.media.negotiation), so
it runs beside the others; the candidates, pings and commands that follow it
are not held up (the hub queues candidates until the offer is applied).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from signaling.protocol import ALLOWED, ProtocolError, decode_frame, error_message, parse_client_message
from signaling.ratelimit import TokenBucket
from signaling.registry import Connection
from vbranch.auth import AuthError
from vbranch.runtime import Runtime

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # abusive client, bad credentials
CLOSE_TOO_BIG = 1009
CONCURRENT_TYPES = frozenset({"rtc.offer"})  # handled beside the connection's other messages
MAX_CONCURRENT = 2  # per connection: one offer waiting, one replacing it


class Handler(Protocol):
    async def authenticate(self, token: str) -> tuple[str, Any]: ...
    async def handle(self, conn: Connection, message: Any) -> None: ...
    async def disconnected(self, conn: Connection) -> None: ...


class StarletteTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_json(self, message: dict[str, Any]) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
            if not text.isascii():
                try:
                    text.encode()
                except UnicodeEncodeError:  # a lone surrogate (echoed from a client): escaped, never lost
                    text = json.dumps(message, separators=(",", ":"))
            await self.ws.send_text(text)

    async def close(self, code: int, reason: str = "") -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason)
            except RuntimeError:
                pass


async def serve_websocket(ws: WebSocket, rt: Runtime, handler: Handler) -> None:
    settings = rt.settings
    await ws.accept()
    transport = StarletteTransport(ws)
    try:
        role, identity = await handler.authenticate(ws.query_params.get("token", ""))
    except AuthError as exc:
        await transport.send_json(error_message(exc.code, exc.message))
        await transport.close(CLOSE_POLICY, exc.code)
        return
    conn = Connection(transport=transport, role=role, identity=identity)
    bucket = TokenBucket(settings.ws_rate_per_s, settings.ws_rate_burst, rt.clock)
    # errors since the last good message; too many means an abusive client. Messages
    # dropped by the rate limit count separately: a burst is tolerated, a flood is not.
    strikes = limited = 0
    background: set[asyncio.Task[None]] = set()
    rt.metrics.ws_connections.labels(role).inc()
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                break
            text = frame.get("text")
            if text is None:
                data = frame.get("bytes") or b""
                if len(data) > settings.ws_max_frame_bytes:
                    await conn.close(CLOSE_TOO_BIG, "frame too large")
                    break
                error = ProtocolError("invalid_message", "send JSON text frames, not binary")
            elif len(text.encode()) > settings.ws_max_frame_bytes:
                await conn.send(error_message(
                    "frame_too_large", f"frames are limited to {settings.ws_max_frame_bytes} bytes"))
                await conn.close(CLOSE_TOO_BIG, "frame too large")
                break
            elif not bucket.allow():
                limited += 1
                error = ProtocolError("rate_limited", f"slow down: at most {settings.ws_rate_per_s:g} messages/s",
                                      _ref_of(text))
            else:
                limited = 0
                error = await _dispatch(conn, text, handler, rt, background)
            if error is None:
                strikes = 0
                continue
            strikes += error.code != "rate_limited"
            rt.metrics.ws_errors.labels(error.code).inc()
            await conn.send(error_message(error.code, error.message, error.ref, error.details))
            if strikes >= settings.ws_abuse_errors or limited > 2 * settings.ws_rate_burst:
                await conn.close(CLOSE_POLICY, "too many bad messages")
                break
    except WebSocketDisconnect:
        pass
    finally:
        rt.metrics.ws_connections.labels(role).dec()
        conn.stop()
        await handler.disconnected(conn)


def _ref_of(text: str) -> Any:
    """The client's id, for a reply to a message we will not otherwise parse (cheaply: bounded)."""
    try:
        raw = decode_frame(text) if len(text) < 4096 else None
    except ProtocolError:
        return None
    ref = raw.get("id") if isinstance(raw, dict) else None
    return ref if isinstance(ref, (str, int)) else None


async def _dispatch(conn: Connection, text: str, handler: Handler, rt: Runtime,
                    background: set[asyncio.Task[None]]) -> ProtocolError | None:
    try:
        raw = decode_frame(text)
    except ProtocolError as exc:
        return exc
    try:
        message = parse_client_message(raw)
        rt.metrics.ws_messages.labels(message.type).inc()
        if message.type not in ALLOWED.get(conn.role, frozenset()):
            raise ProtocolError("forbidden", f"a {conn.role} may not send {message.type}", message.id)
        if conn.party is None and message.type not in ("hello", "ping"):
            raise ProtocolError("hello_required", "send hello first", message.id)
        if message.type in CONCURRENT_TYPES:
            if len(background) >= MAX_CONCURRENT:
                raise ProtocolError("busy", f"{message.type} already in progress; wait for its reply", message.id)
            task = asyncio.create_task(_handle_beside(conn, message, handler, rt))
            background.add(task)
            task.add_done_callback(background.discard)
            return None
        await handler.handle(conn, message)
    except ProtocolError as exc:
        return exc
    except Exception:
        log.exception("handler failed for %s", type(raw).__name__)
        ref = raw.get("id") if isinstance(raw, dict) else None
        return ProtocolError("internal_error", "the server could not process this message", ref)
    return None


async def _handle_beside(conn: Connection, message: Any, handler: Handler, rt: Runtime) -> None:
    """A message handled beside the connection's others; its error goes back the same way."""
    try:
        await handler.handle(conn, message)
        return
    except ProtocolError as exc:
        error = exc
    except Exception:
        log.exception("handler failed for %s", message.type)
        error = ProtocolError("internal_error", "the server could not process this message", message.id)
    rt.metrics.ws_errors.labels(error.code).inc()
    try:
        await conn.send(error_message(error.code, error.message, error.ref, error.details))
    except Exception:  # the connection is gone meanwhile
        pass
