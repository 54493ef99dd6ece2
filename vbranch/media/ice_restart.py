"""ICE restart on a live aiortc peer connection (RFC 8445 section 9, RFC 8839 4.4.1.1.1).

A phone that moves from Wi-Fi to 4G (or a laptop whose address changes) keeps
its ``RTCPeerConnection`` and calls ``restartIce()``: the next offer carries a
new ice-ufrag/ice-pwd and new candidates, and the same DTLS fingerprint and
media sections. aiortc (1.16) cannot apply such an offer: its ICE transport is
started once. This module does what a restart means underneath the DTLS
session, which carries on untouched (same keys, same SRTP, same recording):

- a new aioice ``Connection`` gathers candidates and runs connectivity checks
  with the new credentials, while the old path (if it still works) carries media;
- once a pair is nominated the transport switches over: sends go on the new
  connection, the DTLS reader moves to it (:func:`install_switchable_recv`,
  put in place when the peer connection is made), the old one is closed, and
  the receivers start over at the next packet (:func:`restart_reception`).

The answer (or the restarting side's offer) is the current local description
with the new credentials and candidates (:func:`restarted_sdp`), so codecs,
directions, SSRCs and the DTLS role stay as agreed. Only a bundled connection
(one ICE transport) is restarted; browsers bundle.

Pure: :func:`restart_request`, :func:`restarted_sdp`. Adapter: :class:`IceRestart`.
The private aiortc attributes used are in :data:`HOOKS` (checked at start with the hub's others:
``vbranch.media.forwarding.missing_aiortc_hooks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioice import Connection
from aiortc import RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcicetransport import (
    RTCIceTransport,
    candidate_from_aioice,
    candidate_to_aioice,
    connection_kwargs,
)
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.sdp import SessionDescription

# (class, attribute, where): what this module touches inside aiortc
HOOKS = (
    (RTCIceTransport, "_RTCIceTransport__monitor_task", "init"),
    (RTCIceTransport, "_connection", "init"),
    (RTCIceTransport, "_recv", "init"),
    (RTCIceTransport, "_send", "init"),
    (RTCIceTransport, "_monitor", "class"),
    (RTCRtpReceiver, "_RTCRtpReceiver__jitter_buffer", "init"),  # restart_reception
    (RTCRtpReceiver, "_RTCRtpReceiver__nack_generator", "init"),
)


class RestartRefused(ValueError):
    """The offer is not an ICE restart of this peer connection (the client makes a new one)."""


@dataclass(frozen=True)
class RestartRequest:
    """What a restart offer (or the answer to one) asks of the ICE layer."""

    ufrag: str
    pwd: str
    ice_lite: bool
    candidates: tuple[RTCIceCandidate, ...]
    end_of_candidates: bool


def _fingerprints(desc: SessionDescription) -> set[tuple[str, str]]:
    return {(f.algorithm.lower(), f.value.upper()) for m in desc.media for f in m.dtls.fingerprints}


def _sections(desc: SessionDescription) -> list[tuple[str, str | None]]:
    return [(m.kind, m.rtp.muxId) for m in desc.media]


def restart_request(current: str, offered: str) -> RestartRequest:
    """Check that ``offered`` restarts ICE on the connection described by ``current`` (the remote
    description it was made with) and return its new ICE parameters.

    Raises :class:`RestartRefused` for another peer connection (a different DTLS fingerprint),
    other media sections, unchanged credentials (that would be a renegotiation), or more than
    one ICE transport; ``ValueError`` from the parser for SDP that is not SDP.
    """
    old, new = SessionDescription.parse(current), SessionDescription.parse(offered)
    if not new.media:
        raise RestartRefused("the offer has no media sections")
    if _sections(old) != _sections(new):
        raise RestartRefused("the offer's media sections differ from the connection's")
    if not _fingerprints(new) or _fingerprints(old) != _fingerprints(new):
        raise RestartRefused("the offer comes from another peer connection (its DTLS fingerprint differs)")
    params = {(m.ice.usernameFragment, m.ice.password) for m in new.media}
    if len(params) != 1:
        raise RestartRefused("the offer has more than one ICE transport (only a bundled connection restarts)")
    ufrag, pwd = params.pop()
    if not ufrag or not pwd:
        raise RestartRefused("the offer has no ICE credentials")
    if ufrag == old.media[0].ice.usernameFragment:
        raise RestartRefused("the offer's ICE credentials did not change, so it does not restart ICE")
    seen: set[tuple[str, int]] = set()
    candidates = []
    for m in new.media:
        for c in m.ice_candidates:
            if (c.ip, c.port) not in seen:
                seen.add((c.ip, c.port))
                candidates.append(c)
    return RestartRequest(ufrag, pwd, any(m.ice.iceLite for m in new.media), tuple(candidates),
                          all(m.ice_candidates_complete for m in new.media))


def restarted_sdp(sdp: str, ufrag: str, pwd: str, candidates: list[RTCIceCandidate]) -> str:
    """``sdp`` (a local description) with new ICE credentials and candidates, its version bumped."""
    desc = SessionDescription.parse(sdp)
    origin = desc.origin.split(" ") if desc.origin else []
    if len(origin) >= 3 and origin[2].isdigit():
        origin[2] = str(int(origin[2]) + 1)  # RFC 8866 5.2: a changed description has a higher version
        desc.origin = " ".join(origin)
    for m in desc.media:
        m.ice.usernameFragment, m.ice.password = ufrag, pwd
        m.ice_candidates = list(candidates)
        m.ice_candidates_complete = True
        if candidates:
            m.host, m.port = candidates[0].ip, candidates[0].port
    return str(desc)


def ice_transport(pc: RTCPeerConnection) -> RTCIceTransport:
    """The connection's one ICE transport (RestartRefused if it has several or none)."""
    transports = {id(t.receiver.transport.transport): t.receiver.transport.transport
                  for t in pc.getTransceivers() if t.mid is not None and not t.stopped}
    if len(transports) != 1:
        raise RestartRefused("the connection has more than one ICE transport (only a bundled one restarts)")
    return next(iter(transports.values()))


def install_switchable_recv(transport: RTCIceTransport) -> None:
    """Let the DTLS reader follow the transport onto a restarted connection.

    aiortc's DTLS transport awaits ``transport._recv()``; bound to one aioice
    connection, closing that connection ends DTLS. This reader, when its
    connection is closed because the transport switched, reads on from the new one.
    Call it before the transport connects (right after ``setRemoteDescription``).
    """
    async def recv() -> bytes:
        while True:
            connection = transport._connection
            try:
                return await connection.recv()
            except ConnectionError:
                if transport._connection is connection:
                    raise

    transport._recv = recv  # type: ignore[method-assign]


def restart_reception(pc: RTCPeerConnection) -> None:
    """After a gap, each receiver of ``pc`` starts over at the next packet.

    The packets lost with the old path are beyond the sender's retransmission
    history: aiortc's jitter buffer would wait for them until it overflows
    (seconds of frozen video after the path is back) and its NACK list would ask
    for hundreds of them. Forwarding and recording start again on a key frame
    (``MediaSource.new_path``), which the hub asks for at once.
    """
    for t in pc.getTransceivers():
        r = t.receiver
        old = getattr(r, "_RTCRtpReceiver__jitter_buffer", None)
        if old is not None:
            r._RTCRtpReceiver__jitter_buffer = JitterBuffer(
                capacity=old.capacity, prefetch=old._prefetch, is_video=old._is_video)
        if getattr(r, "_RTCRtpReceiver__nack_generator", None) is not None:
            r._RTCRtpReceiver__nack_generator = NackGenerator()


class IceRestart:
    """One ICE restart of one peer connection: gather, check, switch over.

    ``controlling``: the side whose offer restarts ICE controls it (RFC 8445 6.1.1 for a
    full-ICE offerer); the answering hub is controlled.
    """

    def __init__(self, pc: RTCPeerConnection, *, controlling: bool, ice_servers: list[RTCIceServer],
                 on_switched: Callable[[IceRestart, float], None] | None = None) -> None:
        self.pc = pc
        self.transport = ice_transport(pc)
        self.connection = Connection(ice_controlling=controlling, **connection_kwargs(list(ice_servers)))
        self.started = time.monotonic()
        self.switched = asyncio.Event()
        self._on_switched = on_switched
        self._task: asyncio.Task[None] | None = None

    @property
    def local_parameters(self) -> tuple[str, str]:
        return self.connection.local_username, self.connection.local_password

    async def gather(self) -> list[RTCIceCandidate]:
        """Gather the new local candidates (before the restarted description is made)."""
        await self.connection.gather_candidates()
        return self.local_candidates()

    def local_candidates(self) -> list[RTCIceCandidate]:
        return [candidate_from_aioice(c) for c in self.connection.local_candidates]

    async def start(self, remote: RestartRequest) -> None:
        """The other side's new parameters are known: run the checks, then switch (in the background)."""
        c = self.connection
        c.remote_username, c.remote_password, c.remote_is_lite = remote.ufrag, remote.pwd, remote.ice_lite
        for candidate in remote.candidates:
            await c.add_remote_candidate(candidate_to_aioice(candidate))
        if remote.end_of_candidates and remote.candidates:
            await c.add_remote_candidate(None)
        self._task = asyncio.ensure_future(self._run())

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        """A trickled candidate of the other side's (None: no more)."""
        if not self.connection._remote_candidates_end:
            await self.connection.add_remote_candidate(None if candidate is None else candidate_to_aioice(candidate))

    async def wait(self, timeout: float) -> bool:
        """True once switched over; False if the checks failed or ``timeout`` passed."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.switched.wait()), timeout)
        return self.switched.is_set()

    async def cancel(self) -> None:
        """Give up (a newer restart or offer replaced this one); the old path is left as it is."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task
        if not self.switched.is_set():
            await self.connection.close()

    async def _run(self) -> None:
        try:
            await self.connection.connect()
        except ConnectionError:
            await self.connection.close()
            return
        self._switch()

    def _switch(self) -> None:
        t = self.transport
        old: Any = t._connection
        new = self.connection
        monitor = getattr(t, "_RTCIceTransport__monitor_task", None)
        t._connection = new
        t.iceGatherer._connection = new
        t.iceGatherer._remote_candidates_end = new._remote_candidates_end
        t._send = new.send  # type: ignore[method-assign]
        if monitor is not None:
            monitor.cancel()  # it watches the old connection, whose close would fail the transport
        t._RTCIceTransport__monitor_task = asyncio.ensure_future(t._monitor())
        self._closing_old = asyncio.ensure_future(old.close())  # the DTLS reader moves on (install_switchable_recv)
        restart_reception(self.pc)
        self.switched.set()
        if self._on_switched is not None:
            self._on_switched(self, time.monotonic() - self.started)
