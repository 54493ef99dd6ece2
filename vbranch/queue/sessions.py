"""Customer sessions: creation, state changes and their timeline (application service)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import uuid
from typing import Any

from PIL import Image, UnidentifiedImageError

from vbranch.db.models import CustomerSession, ReferencePhoto
from vbranch.db.repositories import Catalog, Sessions
from vbranch.domain.errors import Conflict, Invalid, NotFound, TooLarge
from vbranch.domain.session_state import FINAL, SessionState, transition
from vbranch.evidence.journal import NewRows, SessionUpdate
from vbranch.facecheck import ReferencePhotoError
from vbranch.runtime import Runtime

_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


def decode_photo(data_b64: str, max_bytes: int) -> tuple[bytes, str]:
    """Base64 JPEG/PNG -> (bytes, content type); Invalid `invalid_photo` (TooLarge `photo_too_large`) otherwise."""
    if len(data_b64) > max_bytes * 4 // 3 + 8:
        raise TooLarge("photo_too_large", f"the reference photo is over {max_bytes} bytes")
    if data_b64.startswith("data:"):
        data_b64 = data_b64.partition(",")[2]
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("invalid_photo", "reference_photo is not valid base64") from None
    ctype = next((t for magic, t in _MAGIC.items() if raw.startswith(magic)), None)
    if ctype is None:
        raise Invalid("invalid_photo", "reference_photo must be a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
    except (UnidentifiedImageError, OSError, ValueError):
        raise Invalid("invalid_photo", "reference_photo could not be decoded") from None
    return raw, ctype


async def check_reference_face(rt: Runtime, raw: bytes) -> None:
    """One clear face, big enough, or Invalid `invalid_photo` naming the reason."""
    try:
        await rt.faces.analyse_reference(raw)
    except ReferencePhotoError as exc:
        raise Invalid("invalid_photo", exc.message,
                       {"reason": exc.code}) from None


# a call has ended from here on (ended_at is the end of the call, not of the wrap-up)
ENDED = frozenset({SessionState.WRAP_UP, SessionState.INTERRUPTED, SessionState.COMPLETED, SessionState.ABANDONED,
                   SessionState.FAILED})


class SessionService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._locks: dict[str, asyncio.Lock] = {}
        # live sessions as the last change left them (every column this service writes), and the
        # digests of their reference photos (None: none): what the hot path and sealing read
        self._known: dict[str, CustomerSession] = {}
        self._photo_sha256: dict[str, str | None] = {}

    async def create(self, *, service: str, channel: str, customer_ref: str, customer_name: str,
                     priority: int, reference_photo: str | None, created_by: str) -> tuple[CustomerSession, str]:
        photo = decode_photo(reference_photo, self.rt.settings.max_reference_photo_bytes) if reference_photo else None
        if photo:
            await check_reference_face(self.rt, photo[0])
        now = self.rt.clock.now()
        async with self.rt.db.session() as db:
            svc = await Catalog(db).service(service)
        if svc is None or not svc.active:
            raise Invalid("unknown_service", f"no active service {service!r}")
        sess = CustomerSession(id=uuid.uuid4().hex, service_code=service, channel=channel,
                               customer_ref=customer_ref, customer_name=customer_name, priority=priority,
                               state=SessionState.QUEUED, created_at=now)
        photo_row = dict(session_id=sess.id, content_type=photo[1], data=photo[0],
                         sha256=hashlib.sha256(photo[0]).hexdigest(), created_at=now) if photo else None

        rows = (CustomerSession(**sess.model_dump()),) + ((ReferencePhoto(**photo_row),) if photo_row else ())
        # the session and its first event commit together
        self.rt.journal.start_chain(sess.id)
        await self.rt.journal.record(sess.id, "session.created", created_by,
                                     {"service": service, "channel": channel, "priority": priority,
                                      "reference_photo": bool(photo)}, at=now, change=NewRows(rows))
        self._known[sess.id] = sess  # the customer's hello reads it from here
        self._photo_sha256[sess.id] = photo_row["sha256"] if photo_row else None
        await self.rt.journal.audit(created_by, "session.create", sess.id, {"service": service})
        token, _ = self.rt.tokens.issue_join(sess.id)
        self.rt.metrics.sessions_created.labels(service, channel).inc()
        return sess, token

    async def replace_reference_photo(self, session_id: str, photo_b64: str, actor: str) -> str:
        """A new reference photo for a session (e.g. the agent scanned the customer's ID); once the call
        or visit has ended its evidence is sealed, and the photo is refused (Conflict ``session_ended``)."""
        raw, ctype = decode_photo(photo_b64, self.rt.settings.max_reference_photo_bytes)
        await check_reference_face(self.rt, raw)
        digest = hashlib.sha256(raw).hexdigest()
        async with self._locks.setdefault(session_id, asyncio.Lock()):  # not interleaved with the end's move
            await self._check_live(session_id)
            now = self.rt.clock.now()
            async with self.rt.db.session() as db:
                row = await Sessions(db).reference_photo(session_id)
                if row is None:
                    row = ReferencePhoto(session_id=session_id, content_type=ctype, data=raw, sha256=digest,
                                         created_at=now)
                else:
                    row.content_type, row.data, row.sha256, row.created_at = ctype, raw, digest, now
                db.add(row)
                await db.commit()
            await self.rt.journal.record(session_id, "reference_photo.replaced", actor, {"sha256": digest})
            if session_id in self._known:
                self._photo_sha256[session_id] = digest
        await self.rt.journal.audit(actor, "session.reference_photo", session_id, {"sha256": digest})
        return digest

    async def get(self, session_id: str) -> CustomerSession | None:
        """A session's live fields (state, agent, times, consent, evidence issues, service, priority).

        A live session is read once and then kept as move() and update() leave it, so the hot path
        (hello, media, the end of a call, sealing) does not read the database; columns written
        elsewhere (photos, an acknowledgement) are read from the database by whoever needs them.
        """
        sess = self._known.get(session_id)
        if sess is not None:
            return sess
        async with self._locks.setdefault(session_id, asyncio.Lock()):  # not a read from before a move
            sess = self._known.get(session_id)
            if sess is None:
                async with self.rt.db.session() as db:
                    sess = await Sessions(db).get(session_id)
                if sess is not None and sess.state not in FINAL:
                    self._known[session_id] = sess
        if sess is None or sess.state in FINAL:
            self._locks.pop(session_id, None)  # nothing more will move it: no lock kept for it
        return sess

    async def reference_photo_sha256(self, session_id: str) -> str | None:
        """The digest of the session's reference photo (None: it has none)."""
        if session_id in self._photo_sha256:
            return self._photo_sha256[session_id]
        async with self.rt.db.session() as db:
            return await Sessions(db).reference_photo_sha256(session_id)

    async def update(self, session_id: str, kind: str, actor: str, data: dict[str, Any],
                     values: dict[str, Any], *, while_live: bool = False) -> None:
        """New values for columns other than the state (consent, evidence issues), stored with their
        timeline event in one commit.

        ``while_live``: only before the call or visit has ended; afterwards Conflict ``session_ended``
        (what the customer says is sealed with the call, and does not change after it).
        """
        async with self._locks.setdefault(session_id, asyncio.Lock()):  # not interleaved with a move
            if while_live:
                await self._check_live(session_id)
            await self.rt.journal.record(session_id, kind, actor, data, change=SessionUpdate(session_id, values))
            known = self._known.get(session_id)
            if known is not None:
                self._known[session_id] = CustomerSession.model_validate({**known.model_dump(), **values})

    async def move(self, session_id: str, target: SessionState, actor: str,
                   data: dict[str, Any] | None = None, **changes: Any) -> CustomerSession:
        """Apply one state change (checked by the state machine); the row and its timeline event commit together.

        ``ended_at`` is set when the call or visit ends (wrap-up, interrupted, or a final state).
        """
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:  # one move at a time per session: each is checked against the last
            now = self.rt.clock.now()
            sess = await self._current(session_id)
            previous = sess.state
            values = {"state": transition(sess.state, target), **changes}
            if target in ENDED and sess.ended_at is None and "ended_at" not in changes:
                values["ended_at"] = now

            try:
                await self.rt.journal.record(session_id, f"state.{target}", actor,
                                             {"from": previous, **(data or {})}, at=now,
                                             change=SessionUpdate(session_id, values))
            except BaseException:
                self._known.pop(session_id, None)  # read it again next time
                raise
            sess = CustomerSession.model_validate({**sess.model_dump(), **values})
            self._known[session_id] = sess  # only move() changes these fields: the next move needs no read
        if target in FINAL:
            self._known.pop(session_id, None)
            self._photo_sha256.pop(session_id, None)
            self._locks.pop(session_id, None)
            await self.rt.journal.forget(session_id)  # memory stays bounded; a later event reloads the head
        self.rt.metrics.session_transitions.labels(str(target)).inc()
        return sess

    async def _current(self, session_id: str) -> CustomerSession:
        """The session as it is now (the caller holds its lock), or NotFound."""
        sess = self._known.get(session_id)
        if sess is None:
            async with self.rt.db.session() as db:
                sess = await Sessions(db).get(session_id)
            if sess is None:
                raise NotFound("not_found", "no such session")
        return sess

    async def _check_live(self, session_id: str) -> None:
        """Conflict ``session_ended`` once the call or visit has ended (the caller holds its lock)."""
        if (await self._current(session_id)).state in ENDED:
            raise Conflict("session_ended", "the session has ended: its evidence is sealed")

    async def record(self, session_id: str, kind: str, actor: str, data: dict[str, Any] | None = None) -> None:
        await self.rt.journal.record(session_id, kind, actor, data)
