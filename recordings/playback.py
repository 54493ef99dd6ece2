"""Copies of recordings a browser can play, made by stream copy (never a re-encode).

Chromium plays WebM (VP8/Opus) as recorded, but not H.264 in Matroska: those
recordings get an MP4 copy (H.264 and Opus stream-copied, ``faststart`` so
the index comes first and a player can seek with HTTP Range at once). The copy
is made on the first replay and kept in the storage under a derived key;
it is a convenience, not evidence: the original stays what is hashed, signed,
exported and verified, and purging a recording removes its copy too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from recordings.storage import KeyExistsError, RecordingStorage
from recordings.writer import remux

PLAYBACK_SUFFIX = ".play.mp4"


def needs_copy(container: str, video_codec: str | None) -> bool:
    """Whether browsers need an MP4 copy to play this recording."""
    return container != "webm" and (video_codec or "").lower() == "h264"


def playback_key(storage_key: str) -> str:
    return storage_key + PLAYBACK_SUFFIX


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def ensure_playable(storage: RecordingStorage, storage_key: str) -> str:
    """The key of the MP4 copy of ``storage_key``, made now if it does not exist (blocking: run in a thread).

    One copy at a time per recording (the end of the call and a first replay may race).
    """
    with _locks_guard:
        lock = _locks.setdefault(storage_key, threading.Lock())
    with lock:
        return _make_copy(storage, storage_key)


def _make_copy(storage: RecordingStorage, storage_key: str) -> str:
    key = playback_key(storage_key)
    if storage.exists(key):
        return key
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        with storage.open_read(storage_key) as src:
            remux(src, tmp, format="mp4", faststart=True)
        try:
            out = storage.open_write(key)
        except KeyExistsError:  # made meanwhile by another request
            return key
        try:
            with open(tmp, "rb") as data, out:
                shutil.copyfileobj(data, out, 1 << 20)
            storage.finalize(key)
        except BaseException:  # no half copy left behind to be served as the copy
            storage.delete(key)
            raise
    finally:
        os.unlink(tmp)
    return key


def delete_copy(storage: RecordingStorage, storage_key: str) -> None:
    key = playback_key(storage_key)
    if storage.exists(key):
        storage.delete(key)
