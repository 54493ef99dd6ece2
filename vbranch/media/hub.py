"""The media hub: one aiortc peer connection per party, relay and record every call.

The server is always the answerer. Each party (customer, agent) has one
:class:`RTCPeerConnection` with the hub carrying audio and video both ways;
either may connect first and either may reconnect (a new offer replaces the
party's connection; its recording continues in the same file).

``mode="passthrough"`` (default): encoded frames are forwarded and recorded as
they arrive (see :mod:`vbranch.media.forwarding`); keyframe requests travel back
to the original sender; video is decoded only for taps; a transcoding fallback
(decode + aiortc encode) is used only when the parties share no codec.

``mode="stock"``: aiortc's MediaRelay + MediaRecorder (decode, re-encode), kept
to measure the difference (bench/media.py); it lives in :mod:`vbranch.media.stock`
and is chosen per session in one place (``MediaHub._session``).

Timeline events go to ``on_event(session_id, kind, data)``; ``data`` always has
``at`` (wall clock from the injected clock) and, once the call's start is known
(:meth:`MediaHub.open_session`), ``offset_s`` from it. Kinds:

- ``media.party_connected`` {party, video_codec, audio_codec, ignored_candidates: {mdns, tcp}}
- ``media.party_disconnected`` {party, reason: closed|closed_by_party|failed|replaced|ended}
- ``media.ice_restarted`` {party, after_s}: the party's connection moved to a new network path
  (ICE restart, see vbranch.media.ice_restart); ``after_s`` from its restart offer to the switch
- ``media.party_stalled`` {party, silent_s} / ``media.party_resumed`` {party}: connected, but no
  frame arrived for ``stall_after_s`` / frames flow again
- ``media.party_not_connected`` {party, reason: no_offer|ice, after_s}: not connected
  ``connect_timeout_s`` after the call opened or after its offer (told as it happens)
- ``media.offer_received`` {party, video_codecs, audio_codecs, candidates, mdns_ignored}: what
  a party's device offered (so a reviewer sees, e.g., an H.264-only iPhone)
- ``media.forwarding_started`` {from, to, kind, mode: passthrough|transcode, source_codec, sink_codec}
- ``media.transcoding_fallback`` {from, to, kind, source_codec, sink_codec}
- ``media.keyframe_requested`` {party, by, reason: pli|forward_start|forward_overflow|recorder_start|tap_start|tap_overflow|api}
- ``media.recording_started`` {party, storage_key, container, video_codec, audio_codec, started_at}
- ``media.recording_finalised`` {RecordingResult fields}
- ``media.recording_warning`` {party, message} / ``media.recording_error`` {party, error}

Codecs: the call's codec is one both parties offered (vbranch.media.negotiation);
with ``pair_wait_s`` the first offer's answer waits (at most that long) for the
other party's offer, so the order of arrival never decides whether a call is
transcoded. ICE: mDNS candidates are ignored and the browser's address is
learnt from its checks (vbranch.media.ice); :meth:`MediaHub.local_candidates`
gives the hub's own for trickling to the client. Each party's media health
(vbranch.media.health) is kept for the evidence (:meth:`MediaHub.health`).

Notes:

- An offer makes a new peer connection for that party (a client that lost the
  server, e.g. after a restart, makes a new RTCPeerConnection), unless it is an
  ICE restart (``handle_offer(..., ice_restart=True)``): then the party's
  connection, its DTLS session and its recording carry on over a new path, and
  key frames are asked of both parties at once. Other renegotiation of an
  existing connection is not supported. Offer audio and video sendrecv up front.
- Recordings: one file per party per session, key
  ``{key_prefix}{session_id}/{party}.webm`` (``.mkv`` for H.264; ``-2`` etc. if
  the key exists: a file is never overwritten). The file stays open across a
  reconnect and is finalised by :meth:`MediaHub.end_session`.
- Threads: a 2-thread pool (``vbranch-media``) for fsync, hashing, tap and
  transcoding decodes; aiortc's default executor encodes only when
  transcoding (or always, in stock mode). The event loop never decodes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from recordings.storage import RecordingStorage
from vbranch.clock import Clock, SystemClock

from .codecs import codec_key
from .forwarding import ForwardTrack, MediaSource, hook_sender_keyframes, tune_socket_buffers
from .health import PartyHealth
from .ice import CandidateError, TrickledCandidate, candidate_message, parse_candidate, sanitize_offer
from .ice_restart import IceRestart, RestartRefused, install_switchable_recv, restart_request, restarted_sdp
from .negotiation import AUDIO_ORDER, choose, offered, prefer_codecs, variant
from .recorder import PartyRecorder, RecordingResult
from .stock import StockCall, StockVideoTap, Transceivers
from .tap import VideoTap

log = logging.getLogger(__name__)

PARTIES = ("customer", "agent")
KINDS = ("audio", "video")
MODES = ("passthrough", "stock")
MAX_PENDING_ICE = 64

EventCallback = Callable[[str, str, dict[str, Any]], Any]

__all__ = ["MediaError", "MediaHub", "RecordingResult", "RestartUnavailable", "PARTIES", "MODES"]


class MediaError(Exception):
    """A request the hub cannot honour (bad party, bad SDP/candidate, unknown session)."""


class RestartUnavailable(MediaError):
    """An ICE restart offer the hub cannot apply (no live connection for the party, or the offer is
    not a restart of it): the client makes a new peer connection instead."""


def other_party(party: str) -> str:
    return "agent" if party == "customer" else "customer"


@dataclass(eq=False)
class _Party:
    name: str
    sources: dict[str, MediaSource]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pc: RTCPeerConnection | None = None
    connected: bool = False
    pending_ice: list[TrickledCandidate] = field(default_factory=list)
    usable_candidates: int = 0  # remote candidates given to ICE for the current connection
    end_held: bool = False  # end-of-candidates not passed on: nothing usable came (see vbranch.media.ice)
    offered_at: float | None = None
    sends: set[str] = field(default_factory=set)
    ignored: dict[str, int] = field(default_factory=dict)  # unusable candidates of this connection: mdns, tcp
    tracks: list[ForwardTrack] = field(default_factory=list)
    negotiated: dict[str, str] = field(default_factory=dict)  # kind -> codec key used both ways
    variants: dict[str, str] = field(default_factory=dict)  # kind -> codec variant (h264/42e0)
    offered: dict[str, list[str]] | None = None  # kind -> codec keys its current offer allows
    offer_seen: asyncio.Event = field(default_factory=asyncio.Event)
    health: PartyHealth | None = None
    recorder: PartyRecorder | None = None
    restart: IceRestart | None = None  # an ICE restart of ``pc`` under way (or done)
    remote_sdp: str | None = None  # the party's newest offer applied to ``pc`` (a restart replaces it)


@dataclass(eq=False)
class _Session:
    id: str
    parties: dict[str, _Party]
    taps: set[Any] = field(default_factory=set)
    stock: StockCall | None = None  # the stock path's relay and recorders (mode="stock")
    ended: bool = False
    opened_at: float = 0.0
    started_at: float | None = None  # the call's start (wall clock), for offsets
    call_codecs: dict[str, str] = field(default_factory=dict)  # kind -> codec chosen for the call


class MediaHub:
    def __init__(
        self,
        storage: RecordingStorage,
        clock: Clock | None = None,
        ice_servers: Iterable[dict[str, Any] | Any] | None = None,
        mode: str = "passthrough",
        on_event: EventCallback | None = None,
        *,
        video_codecs: Iterable[str] = ("VP8", "H264"),
        key_prefix: str = "",
        cluster_ms: int = 1000,
        fsync_interval_s: float | None = 1.0,
        header_wait_s: float = 2.0,
        pair_wait_s: float = 0.0,
        connect_timeout_s: float = 15.0,
        stall_after_s: float = 4.0,
        keyframe_interval_s: float | None = 10.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.storage = storage
        self.clock: Clock = clock or SystemClock()
        self.mode = mode
        self.on_event = on_event
        self.video_codecs = [c.lower() for c in video_codecs]
        self.key_prefix = key_prefix
        self.cluster_ms = cluster_ms
        self.fsync_interval_s = fsync_interval_s
        self.header_wait_s = header_wait_s
        self.pair_wait_s = pair_wait_s
        self.connect_timeout_s = connect_timeout_s
        self.stall_after_s = stall_after_s
        # recordings get a key frame at least this often, so a reviewer's seek decodes little
        self.keyframe_interval_s = keyframe_interval_s
        self._ice_servers = [_ice_server(s) for s in (ice_servers or [])]
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ API
    def open_session(self, session_id: str, started_at: float | None = None) -> None:
        """Create the session's state now (it is also created by the first offer).

        ``started_at`` is the call's start (wall clock): events then carry
        ``offset_s`` from it, and a party that has not connected
        ``connect_timeout_s`` after it is flagged.
        """
        session = self._session(session_id, create=True)
        if started_at is not None:
            session.started_at = started_at

    async def handle_offer(self, session_id: str, party: str, sdp: str, *, ice_restart: bool = False) -> str:
        """Apply a party's SDP offer and return the hub's answer SDP.

        ``ice_restart``: the offer restarts ICE on the party's live connection (raises
        :class:`RestartUnavailable` if there is none, or the offer does not restart it).
        """
        _check_party(party)
        session = self._session(session_id, create=True)
        p = self._party(session, party)
        async with p.lock:
            if session.ended:
                raise MediaError("session has ended")
            if ice_restart:
                return await self._restart_ice(session, p, sdp)
            if p.pc is not None:
                await self._close_pc(session, p, "replaced")
            offer = sanitize_offer(sdp)
            pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers)))
            p.pc = pc
            p.usable_candidates, p.end_held = offer.usable, offer.end_held
            p.offered_at = self.clock.now()

            @pc.on("connectionstatechange")
            def _state_changed() -> None:
                self._on_connection_state(session, p, pc)

            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
                p.remote_sdp = offer.sdp
                for t in pc.getTransceivers():  # before ICE connects, so DTLS can follow a restart
                    install_switchable_recv(t.receiver.transport.transport)
                if not any(t.kind in KINDS for t in pc.getTransceivers()):
                    raise MediaError("the offer has no audio or video")
                p.ignored = {"mdns": offer.mdns_dropped, "tcp": 0}
                await self._await_peer_offer(session, p, pc)
                if session.stock is not None:
                    peer = session.parties[other_party(p.name)]
                    transceivers = self._answer_transceivers(session, p, pc)
                    session.stock.wire(p.name, peer.name, transceivers, peer.pc is not None)
                else:
                    self._wire_passthrough(session, p, pc)
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                tune_socket_buffers(pc)
                self._set_health(session, p, "connecting")
                # candidates that came before (or while) the offer was applied
                while p.pending_ice:
                    try:
                        await self._add_candidate(p, pc, p.pending_ice.pop(0))
                    except MediaError as exc:  # already acknowledged: log, do not fail the offer
                        log.info("session %s %s: queued candidate dropped: %s", session_id, party, exc)
            except Exception as exc:
                await self._close_pc(session, p, "failed", emit=False)
                if isinstance(exc, MediaError):
                    raise
                raise MediaError(f"cannot answer the offer: {exc}") from exc
            return pc.localDescription.sdp

    async def _restart_ice(self, session: _Session, p: _Party, sdp: str) -> str:
        """Answer an ICE restart offer (``p.lock`` held): new credentials and candidates, same connection."""
        pc = p.pc
        if pc is None or not p.connected or pc.connectionState in ("closed", "failed") or p.remote_sdp is None:
            raise RestartUnavailable("no live connection to restart: make a new one")
        offer = sanitize_offer(sdp)
        try:
            request = restart_request(p.remote_sdp, offer.sdp)
        except RestartRefused as exc:
            raise RestartUnavailable(str(exc)) from None
        except (ValueError, IndexError, KeyError, AssertionError, TypeError) as exc:  # aiortc's parser asserts
            raise MediaError(f"cannot parse the offer: {exc!r}"[:200]) from None
        if p.restart is not None:
            await p.restart.cancel()
        restart = IceRestart(pc, controlling=False, ice_servers=list(self._ice_servers),
                             on_switched=partial(self._ice_restarted, session, p, pc))
        p.restart = restart
        try:
            answer = restarted_sdp(pc.localDescription.sdp, *restart.local_parameters, await restart.gather())
            await restart.start(request)
        except Exception as exc:  # the old path (if any) is left as it is
            p.restart = None
            await restart.cancel()
            raise MediaError(f"cannot restart ICE: {exc!r}"[:200]) from exc
        p.remote_sdp = offer.sdp
        p.usable_candidates, p.end_held = offer.usable, offer.end_held
        p.offered_at = self.clock.now()
        while p.pending_ice:  # trickled while this was being answered
            try:
                await self._add_candidate(p, pc, p.pending_ice.pop(0))
            except MediaError as exc:
                log.info("session %s %s: queued candidate dropped: %s", session.id, p.name, exc)
        return answer

    def _ice_restarted(self, session: _Session, p: _Party, pc: RTCPeerConnection, restart: IceRestart,
                       after_s: float) -> None:
        if p.pc is not pc or p.restart is not restart:
            return
        tune_socket_buffers(pc)
        for source in p.sources.values():
            source.new_path()  # what follows is re-gated on a key frame (forwarding, recorder, taps)
        # the first frame after the reconnect must be a key frame, both ways: ask at once
        p.sources["video"].request_keyframe("hub", "ice_restart")
        peer = session.parties.get(other_party(p.name))
        if peer is not None:
            peer.sources["video"].request_keyframe(p.name, "ice_restart")
        self._emit(session.id, "media.ice_restarted", {"party": p.name, "after_s": round(after_s, 2)})

    async def add_ice(self, session_id: str, party: str, candidate: dict[str, Any] | None) -> str:
        """Add a trickled ICE candidate ({candidate, sdpMid, sdpMLineIndex}); None ends them.

        Returns what became of it: ``added``, ``queued`` (before the offer is
        applied), ``end`` or ``ignored:<why>`` (mDNS, TCP: valid but unusable
        here). Raises MediaError for anything that is not a candidate.
        """
        _check_party(party)
        try:
            parsed = parse_candidate(candidate)
        except CandidateError as exc:
            raise MediaError(str(exc)) from None
        session = self._session(session_id, create=True)
        p = self._party(session, party)
        if parsed.ignored:
            p.ignored[parsed.ignored] = p.ignored.get(parsed.ignored, 0) + 1
            return f"ignored:{parsed.ignored}"
        pc = p.pc
        if pc is None or pc.remoteDescription is None or p.lock.locked():
            if len(p.pending_ice) >= MAX_PENDING_ICE:
                raise MediaError("too many ICE candidates before the offer")
            p.pending_ice.append(parsed)
            return "queued"
        return await self._add_candidate(p, pc, parsed)

    def local_candidates(self, session_id: str, party: str) -> list[dict[str, Any] | None]:
        """The hub's own candidates for ``party``'s connection, as ``rtc.ice`` payloads, then None (the end)."""
        session = self._session(session_id, create=False)
        p = self._party(session, party)
        pc = p.pc
        out: list[dict[str, Any] | None] = []
        if pc is None:
            return out
        seen: set[int] = set()
        restart = p.restart if p.restart is not None and not p.restart.switched.is_set() else None
        for index, t in enumerate(pc.getTransceivers()):
            ice_transport = t.receiver.transport.transport
            if id(ice_transport) in seen or t.mid is None:
                continue
            seen.add(id(ice_transport))
            local = restart.local_candidates() if restart is not None else ice_transport.iceGatherer.getLocalCandidates()
            for c in local:
                c.sdpMid, c.sdpMLineIndex = t.mid, index
                out.append(candidate_message(c))
        out.append(None)
        return out

    def health(self, session_id: str) -> dict[str, dict[str, Any]]:
        """Each party's media health (see vbranch.media.health); {} for an unknown session."""
        session = self._sessions.get(session_id)
        if session is None:
            return {}
        return {name: self._health(session, p).snapshot() for name, p in session.parties.items()}

    async def close_party(self, session_id: str, party: str) -> None:
        """Hang up one party (its recording stays open until end_session)."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        p = self._party(session, party)
        async with p.lock:
            p.pending_ice.clear()
            if p.pc is not None:
                await self._close_pc(session, p, "closed")

    async def end_session(self, session_id: str) -> list[RecordingResult]:
        """Hang up both parties, finalise both recordings, release everything."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return []
        session.ended = True
        for p in session.parties.values():
            p.offer_seen.set()  # wake an answer waiting for the other party
        for tap in list(session.taps):
            tap.close()
        for p in session.parties.values():
            async with p.lock:
                if p.pc is not None:
                    await self._close_pc(session, p, "ended")
        results: list[RecordingResult] = []
        for p in session.parties.values():
            result: RecordingResult | None = None
            if p.recorder is not None:
                for source in p.sources.values():
                    source.unsubscribe(p.recorder)
                result = await p.recorder.close(self._get_executor())
                p.recorder = None
            elif session.stock is not None:
                result = await session.stock.end_party(p.name, self._get_executor)
            if result is not None:
                results.append(result)
            for source in p.sources.values():
                source.close()
        if not self._sessions:
            for task in (self._flusher, self._watcher):
                if task is not None:
                    task.cancel()
            self._flusher = self._watcher = None
        return results

    def tap_video(self, session_id: str, party: str, *, format: str | None = None) -> VideoTap | StockVideoTap:
        """Decoded video of ``party`` while iterated (av.VideoFrame, or ndarray with format='bgr24')."""
        session = self._session(session_id, create=False)
        p = self._party(session, party)
        if session.stock is not None:
            tap: Any = session.stock.tap(party, format=format, on_close=session.taps.discard)
        else:
            tap = VideoTap(
                p.sources["video"],
                executor=self._get_executor(),
                format=format,
                name=f"tap:{party}",
                on_close=session.taps.discard,
            )
        session.taps.add(tap)
        return tap

    def request_keyframe(self, session_id: str, party: str) -> bool:
        """Ask ``party``'s sender for a key frame now (rate limited)."""
        session = self._session(session_id, create=False)
        return self._party(session, party).sources["video"].request_keyframe("hub", "api")

    def sessions(self) -> list[str]:
        return list(self._sessions)

    def stats(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id, create=False)
        out: dict[str, Any] = {}
        for name, p in session.parties.items():
            out[name] = {
                "connected": p.connected,
                "connection_state": p.pc.connectionState if p.pc else None,
                "negotiated": dict(p.negotiated),
                "received": {
                    k: {
                        "codec": s.key,
                        "frames": s.frames,
                        "keyframes": s.keyframes,
                        "bytes": s.bytes,
                        "plis_sent": s.plis_sent,
                    }
                    for k, s in p.sources.items()
                },
                "forwarded": {
                    t.kind: {
                        "mode": t.mode,
                        "frames_in": t.frames_in,
                        "frames_out": t.frames_out,
                        "dropped": t.dropped,
                    }
                    for t in p.tracks
                },
                "recording": p.recorder.stats() if p.recorder else None,
            }
        return out

    async def close(self) -> None:
        """End every session and stop the hub's worker thread and tasks."""
        self._closed = True
        for session_id in list(self._sessions):
            try:
                await self.end_session(session_id)
            except Exception:
                log.exception("ending session %s failed", session_id)
        for task in (self._flusher, self._watcher):
            if task is not None:
                task.cancel()
        self._flusher = self._watcher = None
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)

    # ------------------------------------------------------------ internals
    def _session(self, session_id: str, *, create: bool) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            if not create:
                raise MediaError(f"unknown media session {session_id!r}")
            if self._closed:
                raise MediaError("media hub is closed")
            parties = {}
            for name in PARTIES:
                parties[name] = _Party(
                    name=name,
                    sources={
                        kind: MediaSource(
                            name,
                            kind,
                            spawn=self._spawn,
                            on_keyframe_request=self._keyframe_event(session_id, name),
                        )
                        for kind in KINDS
                    },
                )
            session = _Session(id=session_id, parties=parties, opened_at=self.clock.now())
            self._sessions[session_id] = session
            # the one place the mode is chosen: a stock session carries its own relay and recorders;
            # passthrough sessions are fsynced and watched for media health
            if self.mode == "stock":
                session.stock = StockCall(session_id, self.storage, self.clock, self.key_prefix,
                                          partial(self._emit, session_id))
            else:
                self._ensure_flusher()
                if self._watcher is None:
                    self._watcher = asyncio.ensure_future(self._watch_loop())
        return session

    @staticmethod
    def _party(session: _Session, party: str) -> _Party:
        p = session.parties.get(party)
        if p is None:
            raise MediaError(f"party must be one of {PARTIES}, not {party!r}")
        return p

    def _keyframe_event(self, session_id: str, party: str) -> Callable[[str, str], None]:
        def emit(by: str, reason: str) -> None:
            self._emit(session_id, "media.keyframe_requested", {"party": party, "by": by, "reason": reason})

        return emit

    def _answer_transceivers(self, session: _Session, p: _Party, pc: RTCPeerConnection) -> Transceivers:
        """One audio and one video transceiver of the offer, answered sendrecv with the call's codec
        first, as (kind, transceiver, the direction the party offered); any other is made inactive."""
        seen: set[str] = set()
        for t in pc.getTransceivers():
            kind = t.kind
            if kind in seen or kind not in KINDS:
                t.direction = "inactive"  # one audio and one video per party
                continue
            seen.add(kind)
            offer_dir = t._offerDirection or "inactive"
            t._codecs = self._order_codecs(session, p, kind, t._codecs)
            t.direction = "sendrecv"
            yield kind, t, offer_dir

    def _wire_passthrough(self, session: _Session, p: _Party, pc: RTCPeerConnection) -> None:
        peer = session.parties[other_party(p.name)]
        sends: set[str] = set()
        for kind, t, offer_dir in self._answer_transceivers(session, p, pc):
            client_sends = offer_dir in ("recvonly", "sendrecv")
            client_receives = offer_dir in ("sendonly", "sendrecv")
            if client_sends:
                p.sources[kind].attach(t.receiver)
                sends.add(kind)
            if client_receives:
                track = ForwardTrack(
                    kind,
                    t._codecs[0],
                    peer.sources[kind],
                    executor=self._get_executor(),
                    to_party=p.name,
                    on_mode=self._mode_event(session.id, peer.name, p.name, kind),
                )
                t.sender.replaceTrack(track)
                hook_sender_keyframes(t.sender, track)
                p.tracks.append(track)
        p.sends = sends
        if p.recorder is None and sends:
            p.recorder = PartyRecorder(
                session_id=session.id,
                party=p.name,
                storage=self.storage,
                clock=self.clock,
                expected_kinds=sends,
                key_prefix=self.key_prefix,
                on_event=lambda kind, data, sid=session.id: self._emit(sid, kind, data),
                request_keyframe=lambda reason, src=p.sources["video"], name=p.name: src.request_keyframe(
                    f"recorder:{name}", reason
                ),
                cluster_ms=self.cluster_ms,
                header_wait_s=self.header_wait_s,
            )
            for source in p.sources.values():
                source.subscribe(p.recorder)
        elif p.recorder is not None and p.recorder.writer is None:
            p.recorder.expected_kinds = sends

    async def _await_peer_offer(self, session: _Session, p: _Party, pc: RTCPeerConnection) -> None:
        """Note what this offer allows; if the call has no codecs yet, give the other party's offer a moment."""
        p.offered = {}
        for t in pc.getTransceivers():
            if t.kind in KINDS and t.kind not in p.offered:
                p.offered[t.kind] = offered(t._codecs)
        p.offer_seen.set()
        self._emit(session.id, "media.offer_received", {
            "party": p.name, "video_codecs": p.offered.get("video", []), "audio_codecs": p.offered.get("audio", []),
            "candidates": p.usable_candidates, "mdns_ignored": p.ignored.get("mdns", 0)})
        peer = session.parties[other_party(p.name)]
        undecided = any(kind not in session.call_codecs for kind in p.offered)
        if self.pair_wait_s > 0 and undecided and peer.offered is None and not peer.connected:
            try:
                await asyncio.wait_for(peer.offer_seen.wait(), self.pair_wait_s)
            except asyncio.TimeoutError:
                log.info("session %s: no offer from the %s within %.1f s; answering the %s alone",
                         session.id, peer.name, self.pair_wait_s, p.name)
        if session.ended:
            raise MediaError("session has ended")

    def _order_codecs(self, session: _Session, p: _Party, kind: str, codecs: list[Any]) -> list[Any]:
        """The party's negotiated codecs with the call's codec first (see vbranch.media.negotiation)."""
        peer = session.parties[other_party(p.name)]
        preference = list(self.video_codecs) if kind == "video" else list(AUDIO_ORDER)
        mine = offered(codecs)
        peer_offer = peer.offered.get(kind) if peer.offered is not None else None
        chosen = choose(preference, mine, peer_offer, session.call_codecs.get(kind))
        ordered = prefer_codecs(codecs, [chosen] if chosen else preference, peer.variants.get(kind))
        if ordered:
            p.negotiated[kind] = codec_key(ordered[0])
            p.variants[kind] = variant(ordered[0])
            if peer_offer is not None and p.negotiated[kind] in peer_offer:
                session.call_codecs.setdefault(kind, p.negotiated[kind])
            elif peer.negotiated.get(kind) == p.negotiated[kind]:
                session.call_codecs.setdefault(kind, p.negotiated[kind])
        return ordered

    def _mode_event(self, session_id: str, src: str, dst: str, kind: str) -> Callable[[str, str, str], None]:
        def emit(mode: str, source_codec: str, sink_codec: str) -> None:
            data = {"from": src, "to": dst, "kind": kind, "source_codec": source_codec, "sink_codec": sink_codec}
            self._emit(session_id, "media.forwarding_started", {**data, "mode": mode})
            if mode == "transcode":
                log.warning("session %s: transcoding %s %s %s->%s", session_id, kind, src, source_codec, sink_codec)
                self._emit(session_id, "media.transcoding_fallback", data)

        return emit

    def _on_connection_state(self, session: _Session, p: _Party, pc: RTCPeerConnection) -> None:
        if pc is not p.pc:
            return
        state = pc.connectionState
        if state == "connected" and not p.connected:
            p.connected = True
            self._set_health(session, p, "connected", emit=False)
            self._emit(
                session.id,
                "media.party_connected",
                {
                    "party": p.name,
                    "video_codec": p.negotiated.get("video"),
                    "audio_codec": p.negotiated.get("audio"),
                    "ignored_candidates": dict(p.ignored),
                },
            )
            if session.stock is not None:
                self._spawn(session.stock.start_recording(p.name, lambda: session.ended))
        elif state in ("failed", "closed"):  # closed: the party hung up its connection (DTLS close)
            self._spawn(self._drop_failed(session, p, pc, "failed" if state == "failed" else "closed_by_party"))

    async def _drop_failed(self, session: _Session, p: _Party, pc: RTCPeerConnection, reason: str) -> None:
        async with p.lock:
            if p.pc is pc:
                await self._close_pc(session, p, reason)

    async def _close_pc(self, session: _Session, p: _Party, reason: str, *, emit: bool = True) -> None:
        pc, p.pc = p.pc, None
        restart, p.restart, p.remote_sdp = p.restart, None, None
        if restart is not None:
            await restart.cancel()
        was_connected, p.connected = p.connected, False
        for track in p.tracks:
            track.stop()
        p.tracks.clear()
        for source in p.sources.values():
            source.detach()
        if pc is not None:
            try:
                await pc.close()
            except Exception:
                log.exception("closing peer connection failed")
        self._set_health(session, p, "lost", emit=False)
        if emit and (was_connected or reason != "ended"):
            self._emit(session.id, "media.party_disconnected", {"party": p.name, "reason": reason})

    async def _add_candidate(self, p: _Party, pc: RTCPeerConnection, candidate: TrickledCandidate) -> str:
        restart = p.restart if p.restart is not None and not p.restart.switched.is_set() else None
        if candidate.end:
            if p.usable_candidates == 0:
                p.end_held = True  # keep learning the party's address from its checks
                return "end"
            if restart is not None:
                await restart.add_candidate(None)
            else:
                await pc.addIceCandidate(None)
            return "end"
        ice = candidate.ice
        assert ice is not None
        transceivers = pc.getTransceivers()
        mids = {t.mid for t in transceivers if t.mid is not None}
        if ice.sdpMid is not None and ice.sdpMid not in mids:
            raise MediaError(f"the candidate names media section {ice.sdpMid!r}, which the offer does not have")
        if ice.sdpMid is None and not 0 <= (ice.sdpMLineIndex or 0) < len(transceivers):
            raise MediaError("the candidate's sdpMLineIndex is beyond the offer's media sections")
        if restart is not None:
            await restart.add_candidate(ice)
        else:
            await pc.addIceCandidate(ice)
        p.usable_candidates += 1
        return "added"

    @staticmethod
    def _health(session: _Session, p: _Party) -> PartyHealth:
        if p.health is None:
            p.health = PartyHealth(p.name, since=session.opened_at)
        return p.health

    def _set_health(self, session: _Session, p: _Party, state: str, *, at: float | None = None,
                    emit: bool = True, **data: Any) -> None:
        health = self._health(session, p)
        if session.ended and state != "lost":
            return
        previous = health.move(state, self.clock.now() if at is None else at)
        if previous is None or not emit:
            return
        if state == "stalled":
            self._emit(session.id, "media.party_stalled", {"party": p.name, **data})
        elif state == "connected" and previous == "stalled":
            self._emit(session.id, "media.party_resumed", {"party": p.name, **data})

    def _check_health(self, session: _Session, now: float, mono: float) -> None:
        """Stalls, resumptions and parties that do not connect (run about once a second)."""
        for p in session.parties.values():
            health = self._health(session, p)
            if p.connected and p.sends:
                arrivals = [p.sources[k].last_arrival for k in p.sends if p.sources[k].last_arrival is not None]
                newest = max(arrivals) if arrivals else None
                silent = mono - newest if newest is not None else None
                if health.state == "connected" and (silent is None or silent > self.stall_after_s):
                    if silent is not None or (health.since is not None and now - health.since > self.stall_after_s):
                        at = now - silent if silent is not None else now
                        self._set_health(session, p, "stalled", at=at,
                                         silent_s=round(silent if silent is not None else now - (health.since or now), 1))
                elif health.state == "stalled" and silent is not None and silent <= self.stall_after_s:
                    self._set_health(session, p, "connected", at=now - silent)
            video = p.sources["video"]
            if (self.keyframe_interval_s and p.connected and p.recorder is not None and "video" in p.sends
                    and video.last_keyframe is not None and mono - video.last_keyframe > self.keyframe_interval_s):
                video.request_keyframe("recorder", "periodic")
            if health.state in ("waiting", "connecting") and not health.not_connected_flagged:
                if health.state == "waiting":
                    since, reason = (session.started_at or session.opened_at), "no_offer"
                else:
                    since, reason = (p.offered_at or now), "ice"
                if now - since > self.connect_timeout_s:
                    health.not_connected_flagged = True
                    self._emit(session.id, "media.party_not_connected",
                               {"party": p.name, "reason": reason, "after_s": round(now - since, 1)})

    async def _watch_loop(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            now, mono = self.clock.now(), time.monotonic()
            for session in list(self._sessions.values()):
                try:
                    self._check_health(session, now, mono)
                except Exception:
                    log.exception("media health check failed for %s", session.id)

    def _emit(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
        callback = self.on_event
        if callback is None:
            return
        payload: dict[str, Any] = {"at": self.clock.now()}
        session = self._sessions.get(session_id)
        if session is not None and session.started_at is not None:
            payload["offset_s"] = round(payload["at"] - session.started_at, 3)
        payload.update(data)
        try:
            result = callback(session_id, kind, payload)
        except Exception:
            log.exception("media event callback failed for %s", kind)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media hub task failed", exc_info=task.exception())

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vbranch-media")
        return self._executor

    def _ensure_flusher(self) -> None:
        if self.fsync_interval_s and self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_loop(self.fsync_interval_s))

    async def _flush_loop(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            recorders = [
                p.recorder
                for s in self._sessions.values()
                for p in s.parties.values()
                if p.recorder is not None and p.recorder.writer is not None
            ]
            if recorders:
                started = time.monotonic()
                await loop.run_in_executor(self._get_executor(), _sync_all, recorders)
                log.debug("fsynced %d recordings in %.1f ms", len(recorders), (time.monotonic() - started) * 1e3)


def _check_party(party: str) -> None:
    if party not in PARTIES:
        raise MediaError(f"party must be one of {PARTIES}, not {party!r}")


def _sync_all(recorders: list[PartyRecorder]) -> None:
    for recorder in recorders:
        try:
            recorder.sync()
        except Exception:
            log.exception("fsync failed")


def _ice_server(server: dict[str, Any] | Any) -> RTCIceServer:
    if isinstance(server, RTCIceServer):
        return server
    if hasattr(server, "model_dump"):
        server = server.model_dump()
    if not isinstance(server, dict) or "urls" not in server:
        raise ValueError(f"invalid ICE server: {server!r}")
    return RTCIceServer(urls=server["urls"], username=server.get("username"), credential=server.get("credential"))
