"""Start-up checks: every adapter the server needs is usable before it takes a request.

Each check is small and named, and a failure raises :class:`StartupError` with one
line naming the piece and the fix (``vbranch serve`` prints it and exits 2), so a
missing piece never shows up later as a 500 on a customer's request.

- :func:`check_data_dir`: the data folder can be made and written to;
- :func:`check_recordings_dir`: the recordings folder can be made and written to;
- :func:`check_signing_key`: the evidence-signing key, if it exists, is readable and
  an Ed25519 key (a missing one is fine: it is made at first start);
- :func:`check_face_engine`: dlib, face_recognition and face_recognition_models are
  installed and the model files are there. Found, not imported: the server process
  never loads them (the face-check workers do);
- :func:`check_database`: the database answers and its schema is brought up to date.

:func:`check_local` runs the first four (no I/O beyond the data folders), :func:`check_adapters`
all five.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import re
import secrets
from pathlib import Path

from vbranch.config import ConfigError, Settings

DB_CONNECT_TIMEOUT_S = 10.0

# The face engine's packages: (module, what provides it, the command that installs it).
# face_recognition's own metadata asks for a source build of dlib; dlib-bin provides dlib.
FACE_PACKAGES = (
    ("dlib", "dlib-bin", "pip install dlib-bin"),
    ("face_recognition_models", "face_recognition_models", "pip install face_recognition_models"),
    ("face_recognition", "face_recognition", "pip install --no-deps face_recognition==1.3.0"),
)
# the files face_recognition loads at import (face_recognition_models' *_location() functions)
FACE_MODEL_FILES = (
    "shape_predictor_68_face_landmarks.dat",
    "shape_predictor_5_face_landmarks.dat",
    "mmod_human_face_detector.dat",
    "dlib_face_recognition_resnet_model_v1.dat",
)


class StartupError(ConfigError):
    """An adapter is not usable; the one-line message names it and the fix."""


# ---------------------------------------------------------------------------- helpers
def _why(exc: BaseException) -> str:
    """A short, one-line reason for an exception (the driver's message, not SQLAlchemy's wrapper)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    inner = getattr(exc, "orig", None) or exc
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    text = re.sub(r"\s+", " ", lines[0]) if lines else type(inner).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def safe_url(url: str) -> str:
    """A database or Redis URL without its password, for messages."""
    from sqlalchemy.engine import URL, make_url

    try:
        u = make_url(url)
        return URL.create(u.drivername, username=u.username or None, host=u.host, port=u.port, database=u.database,
                          query=u.query).render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - any parse error: strip the password by hand
        return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1@", url)


def _probe_writable(folder: Path) -> None:
    """Make ``folder`` and write, fsync and delete a small file in it; raises OSError."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".vbranch-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"vbranch start-up check\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- checks
def _writable_folder(what: str, path: Path, setting: str) -> None:
    folder = Path(os.path.abspath(path))
    try:
        _probe_writable(folder)
    except OSError as exc:
        raise StartupError(f"{what} {folder} is not writable ({_why(exc)}): "
                           f"make it writable by this user or set {setting}") from None


def check_data_dir(settings: Settings) -> None:
    _writable_folder("data folder", settings.data_dir, "VBRANCH_DATA_DIR")


def check_recordings_dir(settings: Settings) -> None:
    _writable_folder("recordings folder", settings.resolved_recordings_dir, "VBRANCH_RECORDINGS_DIR")


def check_signing_key(settings: Settings) -> None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from vbranch.evidence.signing import KEY_FILE

    path = Path(os.path.abspath(settings.data_dir / KEY_FILE))
    try:
        if not path.exists() and not path.is_symlink():
            return  # made at first start
        pem = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"signing key {path} is unreadable ({_why(exc)}): "
                           "let this user read it (it should be a file of mode 0600)") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise StartupError(f"signing key {path} is corrupt (not an unencrypted Ed25519 PEM private key): "
                           "restore it from a backup (a new key would leave older sessions failing "
                           "`vbranch verify`)")


def check_face_engine(settings: Settings | None = None) -> None:
    """The face check's packages and model files are installed (found, not imported)."""
    missing = [(module, command) for module, _dist, command in FACE_PACKAGES if not _findable(module)]
    if missing:
        names = ", ".join(module for module, _ in missing)
        commands = " and ".join(f"`{command}`" for _, command in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise StartupError(f"face check: {names} {verb} not installed: run {commands}")
    if not _findable("pkg_resources"):  # face_recognition_models imports it; setuptools 82 dropped it
        raise StartupError("face check: face_recognition_models needs pkg_resources, gone from setuptools 82: "
                           "run `pip install 'setuptools<82'`")
    spec = importlib.util.find_spec("face_recognition_models")
    folders = [Path(p) / "models" for p in (spec.submodule_search_locations or [])] if spec else []
    for name in FACE_MODEL_FILES:
        if not any((folder / name).is_file() and (folder / name).stat().st_size > 0 for folder in folders):
            where = folders[0] / name if folders else name
            raise StartupError(f"face check: model file {where} is missing: "
                               "run `pip install --force-reinstall face_recognition_models`")


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


async def check_database(settings: Settings, timeout_s: float = DB_CONNECT_TIMEOUT_S) -> None:
    """Connect with the configured URL, then bring the schema up to date (as the server's start did)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from vbranch.db.database import driver_urls, upgrade

    url = settings.resolved_database_url
    shown = safe_url(url)
    try:
        async_url, sync_url = driver_urls(url)
    except Exception as exc:  # noqa: BLE001 - make_url or driver_urls: an unusable URL
        raise StartupError(f"database URL {shown} is not usable ({_why(exc)}): set VBRANCH_DATABASE_URL to "
                           "sqlite:///PATH or postgresql://USER@HOST/DB") from None
    sqlite = async_url.startswith("sqlite")
    hint = ("check the file, its folder and VBRANCH_DATABASE_URL" if sqlite
            else "is PostgreSQL running? check VBRANCH_DATABASE_URL")
    if sqlite:
        path = make_url(sync_url).database
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"database {shown} cannot be opened ({_why(exc)}): {hint}") from None
    engine = create_async_engine(async_url, poolclass=NullPool,
                                 connect_args={} if sqlite else {"connect_timeout": max(1, int(timeout_s))})
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                # SQLite opens any file lazily: reading the schema tells a database from garbage
                await conn.execute(text("PRAGMA schema_version" if sqlite else "SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver error: the database is not usable
        what = "cannot be opened" if sqlite else "is unreachable"
        raise StartupError(f"database {shown} {what} ({_why(exc)}): {hint}") from None
    finally:
        await engine.dispose()
    try:
        await asyncio.to_thread(upgrade, sync_url)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"database {shown} cannot be brought up to date ({_why(exc)}): "
                           "run `vbranch migrate` for the details; check VBRANCH_DATABASE_URL") from None


def check_media_engine(settings: Settings | None = None) -> None:
    """The installed aiortc has the internals the media hub forwards encoded frames through."""
    from vbranch.media.forwarding import missing_aiortc_hooks

    missing = missing_aiortc_hooks()
    if missing:
        import aiortc

        raise StartupError(f"media: aiortc {aiortc.__version__} lacks {', '.join(missing)}, which the media hub "
                           "uses: install the tested version (pip install -e . picks it from pyproject.toml)")


LOCAL_CHECKS = (check_data_dir, check_recordings_dir, check_signing_key, check_face_engine, check_media_engine)


def check_local(settings: Settings) -> None:
    """The checks that need no event loop: folders, signing key, face engine."""
    for check in LOCAL_CHECKS:
        check(settings)


async def check_redis(settings: Settings, timeout_s: float = DB_CONNECT_TIMEOUT_S) -> None:
    """With VBRANCH_REDIS_URL: Redis answers (presence lives there)."""
    if not settings.redis_url:
        return
    from redis.asyncio import Redis

    shown = safe_url(settings.redis_url)
    try:
        client = Redis.from_url(settings.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - an unusable URL
        raise StartupError(f"Redis URL {shown} is not usable ({_why(exc)}): set VBRANCH_REDIS_URL to "
                           "redis://HOST:6379/0 or unset it") from None
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it
        raise StartupError(f"Redis at {shown} does not answer ({_why(exc)}): is it running? "
                           "check VBRANCH_REDIS_URL") from None
    finally:
        await client.aclose()


async def check_adapters(settings: Settings) -> None:
    """Every adapter: raises StartupError (one line: the piece and the fix) on the first that is not usable."""
    check_local(settings)
    await check_database(settings)
    await check_redis(settings)


__all__ = ["StartupError", "check_adapters", "check_data_dir", "check_database", "check_face_engine",
           "check_local", "check_recordings_dir", "check_redis", "check_signing_key", "safe_url"]
