"""Start-up checks: a missing or broken adapter stops the start with one line naming it and the fix.

Tests run as root, where chmod does not stop writes: an unwritable folder is a path under a
regular file, which fails for everyone.  PostgreSQL "unreachable" is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vbranch import startup
from vbranch.config import ConfigError, load_settings
from vbranch.evidence.signing import KEY_FILE
from vbranch.startup import StartupError, check_adapters

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_vbranch_env(monkeypatch):
    for name in [k for k in os.environ if k.startswith("VBRANCH_")]:
        monkeypatch.delenv(name)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


async def failure(**settings) -> str:
    with pytest.raises(StartupError) as info:
        await check_adapters(load_settings(**settings))
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


# ------------------------------------------------------------------------------ healthy
async def test_the_healthy_default_passes_and_leaves_no_probe(tmp_path):
    data = tmp_path / "data"
    await check_adapters(load_settings(data_dir=data))
    assert (data / "vbranch.db").is_file()  # migrated
    assert (data / "recordings").is_dir()
    assert not any(p.name.startswith(".vbranch-write-probe") for p in data.rglob("*"))
    await check_adapters(load_settings(data_dir=data))  # twice: the second start finds all in place


def test_startup_error_is_a_config_error():
    assert issubclass(StartupError, ConfigError)


# ------------------------------------------------------------------------------ folders
async def test_data_folder_not_writable(tmp_path):
    blocker = a_file(tmp_path)
    message = await failure(data_dir=blocker)
    assert message.startswith(f"data folder {blocker} is not writable")
    assert "VBRANCH_DATA_DIR" in message


async def test_recordings_folder_not_writable(tmp_path):
    folder = a_file(tmp_path) / "recordings"
    message = await failure(data_dir=tmp_path / "data", recordings_dir=folder)
    assert message == (f"recordings folder {folder} is not writable (Not a directory): "
                       "make it writable by this user or set VBRANCH_RECORDINGS_DIR")


# ------------------------------------------------------------------------------ signing key
async def test_corrupt_signing_key(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILE).write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    message = await failure(data_dir=data)
    assert message.startswith(f"signing key {data / KEY_FILE} is corrupt")
    assert "restore it from a backup" in message


async def test_signing_key_of_another_kind(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = tmp_path / "data"
    data.mkdir()
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (data / KEY_FILE).write_bytes(pem)
    assert "is corrupt (not an unencrypted Ed25519 PEM private key)" in await failure(data_dir=data)


async def test_unreadable_signing_key(tmp_path):
    data = tmp_path / "data"
    (data / KEY_FILE).mkdir(parents=True)  # a folder where the key should be: unreadable, even for root
    message = await failure(data_dir=data)
    assert message.startswith(f"signing key {data / KEY_FILE} is unreadable (Is a directory)")


# ------------------------------------------------------------------------------ face engine
async def test_face_recognition_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition", None)  # find_spec now says "not installed"
    message = await failure(data_dir=tmp_path / "data")
    assert message == ("face check: face_recognition is not installed: "
                       "run `pip install --no-deps face_recognition==1.3.0`")


async def test_every_missing_face_package_is_named_with_its_command(tmp_path, monkeypatch):
    real = startup.importlib.util.find_spec
    monkeypatch.setattr(startup.importlib.util, "find_spec",
                        lambda name, *a: None if name in {"dlib", "face_recognition"} else real(name, *a))
    message = await failure(data_dir=tmp_path / "data")
    assert message == ("face check: dlib, face_recognition are not installed: "
                       "run `pip install dlib-bin` and `pip install --no-deps face_recognition==1.3.0`")


async def test_pkg_resources_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    message = await failure(data_dir=tmp_path / "data")
    assert "face_recognition_models needs pkg_resources" in message
    assert message.endswith("run `pip install 'setuptools<82'`")


async def test_a_missing_model_file(tmp_path, monkeypatch):
    monkeypatch.setattr(startup, "FACE_MODEL_FILES", startup.FACE_MODEL_FILES + ("no_such_model.dat",))
    message = await failure(data_dir=tmp_path / "data")
    assert message.startswith("face check: model file ")
    assert "no_such_model.dat is missing" in message
    assert message.endswith("run `pip install --force-reinstall face_recognition_models`")


def test_the_face_check_does_not_load_the_engine():
    code = ("import sys\nfrom vbranch.startup import check_face_engine\ncheck_face_engine()\n"
            "print(sorted(m for m in ('dlib', 'face_recognition', 'face_recognition_models', 'pkg_resources')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ database
async def test_unreachable_postgresql(tmp_path):
    port = closed_port()
    message = await failure(data_dir=tmp_path / "data",
                            database_url=f"postgresql+psycopg://vb:s3cret-pw@127.0.0.1:{port}/vbranch")
    assert message.startswith(f"database postgresql+psycopg://vb@127.0.0.1:{port}/vbranch is unreachable (")
    assert "Connection refused" in message
    assert message.endswith("is PostgreSQL running? check VBRANCH_DATABASE_URL")
    assert "s3cret-pw" not in message


async def test_unreachable_redis(tmp_path):
    port = closed_port()
    message = await failure(data_dir=tmp_path / "data", redis_url=f"redis://:s3cret-pw@127.0.0.1:{port}/0")
    assert message.startswith(f"Redis at redis://127.0.0.1:{port}/0 does not answer (")
    assert message.endswith("is it running? check VBRANCH_REDIS_URL")
    assert "s3cret-pw" not in message


async def test_the_local_redis_passes(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", redis_url="redis://127.0.0.1:6379/0")
    await check_adapters(settings)


async def test_unsupported_database_url(tmp_path):
    message = await failure(data_dir=tmp_path / "data", database_url="mysql://vb:pw@127.0.0.1/vbranch")
    assert message.startswith("database URL mysql://vb@127.0.0.1/vbranch is not usable (unsupported database")
    assert "VBRANCH_DATABASE_URL" in message


async def test_sqlite_file_that_is_not_a_database(tmp_path):
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not a SQLite file, " * 100)
    message = await failure(data_dir=tmp_path / "data", database_url=f"sqlite:///{db}")
    assert message == (f"database sqlite:///{db} cannot be opened (file is not a database): "
                       "check the file, its folder and VBRANCH_DATABASE_URL")


async def test_database_that_cannot_be_migrated(tmp_path):
    db = tmp_path / "newer.db"
    with sqlite3.connect(db) as conn:  # stamped by a (hypothetical) newer vbranch
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('f00dfeedbeef')")
    message = await failure(data_dir=tmp_path / "data", database_url=f"sqlite:///{db}")
    assert message.startswith(f"database sqlite:///{db} cannot be brought up to date (")
    assert "f00dfeedbeef" in message
    assert message.endswith("run `vbranch migrate` for the details; check VBRANCH_DATABASE_URL")


# ------------------------------------------------------------------------------ the app runs them
def test_create_app_checks_the_folders(tmp_path):
    from vbranch.app import create_app

    with pytest.raises(StartupError, match="^recordings folder .* VBRANCH_RECORDINGS_DIR$"):
        create_app(load_settings(data_dir=tmp_path / "data", recordings_dir=a_file(tmp_path) / "rec"))


async def test_the_app_lifespan_checks_the_database(tmp_path):
    from vbranch.app import create_app

    app = create_app(load_settings(data_dir=tmp_path / "data", secret_key="s" * 40,
                                   database_url=f"postgresql://vb@127.0.0.1:{closed_port()}/vbranch"))
    with pytest.raises(StartupError, match="is PostgreSQL running"):
        async with app.router.lifespan_context(app):
            pass


# ------------------------------------------------------------------------------ `vbranch serve`
def serve(tmp_path: Path, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VBRANCH_")}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
    full.update({"VBRANCH_DATA_DIR": str(tmp_path / "data"), "VBRANCH_PORT": str(closed_port()), **env})
    if prelude:
        argv = [sys.executable, "-c", f"{prelude}\nfrom vbranch.cli import main\nsys.exit(main(['serve']))"]
    else:
        argv = [sys.executable, "-m", "vbranch.cli", "serve"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90, env=full, cwd=tmp_path, check=False)


@pytest.mark.parametrize("case", ["postgresql", "recordings", "signing_key", "face_recognition"])
def test_serve_exits_2_with_one_line(tmp_path, case):
    prelude, expected = "", ""
    env: dict[str, str] = {}
    if case == "postgresql":
        env["VBRANCH_DATABASE_URL"] = f"postgresql://vb:pw@127.0.0.1:{closed_port()}/vbranch"
        expected = "is PostgreSQL running? check VBRANCH_DATABASE_URL"
    elif case == "recordings":
        env["VBRANCH_RECORDINGS_DIR"] = str(a_file(tmp_path) / "recordings")
        expected = "set VBRANCH_RECORDINGS_DIR"
    elif case == "signing_key":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / KEY_FILE).write_text("garbage\n")
        expected = f"signing key {tmp_path / 'data' / KEY_FILE} is corrupt"
    else:  # the case: a plain `pip install .` has no face_recognition
        prelude = "import sys\nsys.modules['face_recognition'] = None"
        expected = "run `pip install --no-deps face_recognition==1.3.0`"
    proc = serve(tmp_path, env, prelude)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vbranch: cannot start: ")
    assert expected in lines[0]


def test_an_aiortc_without_the_hooks_the_hub_uses_stops_the_start(monkeypatch):
    from aiortc import RTCRtpSender

    from vbranch.media.forwarding import missing_aiortc_hooks
    from vbranch.startup import StartupError, check_media_engine

    assert missing_aiortc_hooks() == []  # the installed, pinned aiortc
    check_media_engine()
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(StartupError, match=r"lacks RTCRtpSender\._send_keyframe"):
        check_media_engine()
