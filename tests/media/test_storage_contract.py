"""The recording storage port's contract, run against every backend (a new backend adds itself to BACKENDS).

``memory`` has no files on this machine (``local_path`` is None), as an S3-compatible backend.
"""

from __future__ import annotations

import hashlib
import threading

import pytest

from recordings.storage import (
    CHUNK,
    KeyExistsError,
    LocalDirStorage,
    RecordingStorage,
    StorageError,
    byte_range,
)
from tests.support.memory_storage import MemoryStorage

BACKENDS = {
    "local": lambda tmp_path: LocalDirStorage(tmp_path / "rec"),
    "memory": lambda tmp_path: MemoryStorage(),
}
DATA = bytes(range(256)) * 100  # 25 600 bytes
KEY = "s1/customer.webm"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path) -> RecordingStorage:
    return BACKENDS[request.param](tmp_path)


def put(storage: RecordingStorage, key: str, data: bytes) -> None:
    with storage.open_write(key) as fh:
        fh.write(data)
    storage.finalize(key)


@pytest.mark.parametrize("key", ["", "../x", "/abs", "a//b", "a/../b", ".hidden", "a b", "x" * 600, "a/", 7])
@pytest.mark.parametrize("method", ["open_write", "finalize", "exists", "size", "open_read", "delete", "sha256"])
def test_every_method_refuses_unsafe_keys(backend, key, method):
    with pytest.raises(StorageError):
        getattr(backend, method)(key)


def test_open_write_is_seekable_exclusive_and_finalize_reports_size_and_hash(backend):
    assert not backend.exists(KEY)
    fh = backend.open_write(KEY)
    assert backend.exists(KEY)  # a crash leaves the key taken: it is never handed out again
    fh.write(b"\0" * 16 + DATA[16:])
    fh.seek(0)
    fh.write(DATA[:16])  # a muxer rewrites its header
    fh.seek(0, 2)
    fh.close()
    stored = backend.finalize(KEY)
    assert (stored.key, stored.size_bytes, stored.sha256) == (KEY, len(DATA), hashlib.sha256(DATA).hexdigest())
    with pytest.raises(KeyExistsError):
        backend.open_write(KEY)
    assert backend.read_range(KEY) == DATA  # not replaced
    assert issubclass(KeyExistsError, StorageError)


def test_missing_keys(backend):
    assert not backend.exists("s1/none.webm")
    for method in ("finalize", "size", "open_read", "sha256", "read_range"):
        with pytest.raises(StorageError):
            getattr(backend, method)("s1/none.webm")
    with pytest.raises(StorageError):
        backend.resolve_range("s1/none.webm", 0, None)
    with pytest.raises(StorageError):
        list(backend.iter_range("s1/none.webm"))
    backend.delete("s1/none.webm")  # deleting nothing is not an error


def test_size_sha256_open_read_and_delete(backend):
    put(backend, KEY, DATA)
    put(backend, "s1/agent.webm", b"other")
    assert backend.size(KEY) == len(DATA)
    assert backend.sha256(KEY) == hashlib.sha256(DATA).hexdigest()
    with backend.open_read(KEY) as fh:
        assert fh.read(10) == DATA[:10]
        fh.seek(20000)
        assert fh.read() == DATA[20000:]
    backend.delete(KEY)
    assert not backend.exists(KEY) and backend.exists("s1/agent.webm")
    backend.delete(KEY)


def test_sha256_streams_objects_larger_than_a_chunk(backend):
    big = DATA * (CHUNK // len(DATA) + 3)
    put(backend, KEY, big)
    assert backend.sha256(KEY) == hashlib.sha256(big).hexdigest()


def test_ranges(backend):
    put(backend, KEY, DATA)
    n = len(DATA)
    assert backend.resolve_range(KEY, None, None) == (0, n - 1)
    assert backend.resolve_range(KEY, 10, 19) == (10, 19)
    assert backend.resolve_range(KEY, 10, None) == (10, n - 1)  # bytes=10-
    assert backend.resolve_range(KEY, 0, 10**9) == (0, n - 1)  # an end past the object is clamped
    assert backend.resolve_range(KEY, None, 100) == (n - 100, n - 1)  # bytes=-100
    assert backend.resolve_range(KEY, None, 10**9) == (0, n - 1)
    for start, end in [(n, None), (n + 5, n + 9), (None, 0), (5, 4), (-1, None)]:
        with pytest.raises(StorageError):
            backend.resolve_range(KEY, start, end)
    assert backend.read_range(KEY) == DATA
    assert backend.read_range(KEY, 10, 19) == DATA[10:20]
    assert backend.read_range(KEY, 25590) == DATA[25590:]
    assert backend.read_range(KEY, None, 7) == DATA[-7:]
    chunks = list(backend.iter_range(KEY, 100, 20099, chunk_size=4096))
    assert b"".join(chunks) == DATA[100:20100] and max(map(len, chunks)) == 4096 and len(chunks) == 5


def test_iter_range_opens_the_object_lazily(backend):
    put(backend, KEY, DATA)
    it = backend.iter_range(KEY, 0, 9)
    backend.delete(KEY)  # nothing is read before the first next()
    with pytest.raises(StorageError):
        next(it)


def test_empty_object(backend):
    put(backend, KEY, b"")
    assert backend.size(KEY) == 0 and backend.exists(KEY)
    assert backend.sha256(KEY) == hashlib.sha256(b"").hexdigest()
    assert backend.read_range(KEY) == b"" and list(backend.iter_range(KEY)) == []
    for start, end in [(0, None), (0, 0), (None, 5)]:  # no range of an empty object is satisfiable
        with pytest.raises(StorageError):
            backend.resolve_range(KEY, start, end)


def test_local_path_is_optional_and_if_present_holds_the_bytes(backend):
    put(backend, KEY, DATA)
    path = backend.local_path(KEY)
    assert path is None or path.read_bytes() == DATA


def test_concurrent_writers_get_one_key_each(backend):
    won, lost = [], []

    def write() -> None:
        try:
            fh = backend.open_write(KEY)
        except KeyExistsError:
            lost.append(1)
            return
        with fh:
            fh.write(b"x")
        won.append(1)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(won), len(lost)) == (1, 7)


def test_byte_range_without_a_backend():
    assert byte_range(10, None, None) == (0, 9)
    assert byte_range(0, None, None) == (0, -1)
    assert byte_range(10, 3, None) == (3, 9) and byte_range(10, None, 3) == (7, 9)
    with pytest.raises(StorageError):
        byte_range(10, 10, None)


def test_playback_copy_goes_through_the_port_and_leaves_no_half_copy(monkeypatch):
    from pathlib import Path

    from recordings import playback

    class Flaky(MemoryStorage):
        fail = True

        def finalize(self, key):
            if key.endswith(playback.PLAYBACK_SUFFIX) and self.fail:
                self.fail = False
                raise StorageError("upload failed")
            return super().finalize(key)

    def fake_remux(src, dest, **kw):
        Path(dest).write_bytes(b"mp4:" + src.read())

    monkeypatch.setattr(playback, "remux", fake_remux)
    storage = Flaky()  # no local paths at all
    put(storage, "h/agent.mkv", b"mkv")
    with pytest.raises(StorageError):
        playback.ensure_playable(storage, "h/agent.mkv")
    assert not storage.exists(playback.playback_key("h/agent.mkv"))
    key = playback.ensure_playable(storage, "h/agent.mkv")
    assert key == playback.playback_key("h/agent.mkv") and storage.read_range(key) == b"mp4:mkv"
    playback.delete_copy(storage, "h/agent.mkv")
    assert not storage.exists(key) and storage.exists("h/agent.mkv")
