"""Credentials: argon2 password hashes, JWT staff and join tokens, API keys.

Expiry is checked against the injected clock (not pyjwt's own time) so tests
of expired tokens are deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vbranch.clock import Clock
from vbranch.domain.roles import Role

ALGORITHM = "HS256"
MEDIA_TOKEN_TTL_S = 900  # a recording's URL stays usable this long (a <video> element cannot send headers)
_hasher = PasswordHasher()


class AuthError(Exception):
    """A credential is missing, malformed, expired or for something else."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# argon2 costs about 150 ms of CPU by design: on the event loop one staff login would stall every
# call's signalling and media for that long. The server hashes on two threads (argon2-cffi releases
# the GIL); more at once would only queue for the cores and each hold 64 MiB.
_argon2_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hash_password_off_loop(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_argon2_threads, hash_password, password)


async def verify_password_off_loop(password_hash: str, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_argon2_threads, verify_password, password_hash,
                                                            password)


# A real hash to verify against when the username is unknown, so both paths cost the same.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return "vbk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class StaffClaims:
    account_id: int
    username: str
    role: Role
    expires_at: float


@dataclass(frozen=True)
class JoinClaims:
    session_id: str
    expires_at: float


class TokenService:
    def __init__(self, secret: str, clock: Clock, staff_ttl_s: int, join_ttl_s: int) -> None:
        self._secret = secret
        self._clock = clock
        self.staff_ttl_s = staff_ttl_s
        self.join_ttl_s = join_ttl_s

    def issue_staff(self, account_id: int, username: str, role: Role) -> tuple[str, float]:
        now = self._clock.now()
        exp = now + self.staff_ttl_s
        payload = {"typ": "staff", "sub": str(account_id), "usr": username, "role": str(role),
                   "iat": int(now), "exp": exp, "jti": uuid.uuid4().hex}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), exp

    def issue_join(self, session_id: str) -> tuple[str, float]:
        now = self._clock.now()
        exp = now + self.join_ttl_s
        payload = {"typ": "join", "sid": session_id, "iat": int(now), "exp": exp}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), exp

    def issue_media(self, recording_id: int, account_id: int, ttl_s: int = MEDIA_TOKEN_TTL_S) -> tuple[str, float]:
        """A short-lived URL token for one recording (a <video> element cannot send headers)."""
        now = self._clock.now()
        exp = now + ttl_s
        payload = {"typ": "media", "rec": recording_id, "sub": str(account_id), "iat": int(now), "exp": exp}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), exp

    def decode_media(self, token: str) -> tuple[int, int]:
        """(recording id, account id) from a media token."""
        p = self._decode(token, "media")
        try:
            return int(p["rec"]), int(p["sub"])
        except (KeyError, ValueError):
            raise AuthError("invalid_token", "the token's claims are incomplete") from None

    def _decode(self, token: str, typ: str) -> dict:
        if not token:
            raise AuthError("unauthenticated", "a token is required")
        try:
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                 options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                          "require": ["exp", "typ"]})
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is malformed or its signature is wrong") from None
        if payload.get("typ") != typ:
            raise AuthError("invalid_token", f"this is not a {typ} token")
        if not isinstance(payload["exp"], (int, float)) or payload["exp"] <= self._clock.now():
            raise AuthError("token_expired", "the token has expired")
        return payload

    def decode_staff(self, token: str) -> StaffClaims:
        p = self._decode(token, "staff")
        try:
            return StaffClaims(int(p["sub"]), str(p["usr"]), Role(p["role"]), float(p["exp"]))
        except (KeyError, ValueError):
            raise AuthError("invalid_token", "the token's claims are incomplete") from None

    def decode_join(self, token: str) -> JoinClaims:
        p = self._decode(token, "join")
        if not isinstance(p.get("sid"), str):
            raise AuthError("invalid_token", "the token's claims are incomplete")
        return JoinClaims(p["sid"], float(p["exp"]))

    def peek_type(self, token: str) -> str | None:
        """The token's type if its signature is ours, else None (for routing /ws)."""
        try:
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"verify_exp": False})
        except jwt.PyJWTError:
            return None
        typ = payload.get("typ")
        return typ if typ in ("staff", "join") else None


def constant_time_in(candidate_hash: str, hashes: set[str]) -> bool:
    return any(hmac.compare_digest(candidate_hash, h) for h in hashes)
