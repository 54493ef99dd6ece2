"""Where recordings live: a small storage port with a local-folder implementation.

The recorder writes a file packet by packet through :meth:`RecordingStorage.open_write`
(a real, seekable, unbuffered file, so every write reaches the kernel at once and
survives the process being killed). :meth:`finalize` is called once the writer has
closed the file and returns its size and SHA-256; replay reads byte ranges through
:meth:`open_read` / :meth:`iter_range`.

An S3-compatible backend will spool to a local file the same way and upload on
``finalize``; callers only see keys.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024

# keys are relative, slash-separated; each part is a safe file name
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StorageError(Exception):
    """A key is invalid or missing, or a range cannot be served."""


class KeyExistsError(StorageError):
    """open_write was asked for a key that already holds a recording."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 512:
        raise StorageError(f"invalid storage key: {key!r}")
    parts = key.split("/")
    for part in parts:
        if not _KEY_PART.match(part) or part in {".", ".."}:
            raise StorageError(f"invalid storage key: {key!r}")
    return key


def byte_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """Turn an HTTP-style inclusive byte range of an object of ``size`` bytes into (start, end_inclusive).

    ``start=None`` with ``end=N`` means the last N bytes (``bytes=-N``); neither means the whole
    object (``(0, -1)`` when it is empty). An end past the object is clamped. Raises
    :class:`StorageError` if the range is unsatisfiable (any range of an empty object, a start at
    or past the end, ``bytes=-0``).
    """
    if start is None and end is None:
        return 0, size - 1
    if size == 0:  # no byte range of an empty object can be satisfied
        raise StorageError("unsatisfiable range")
    if start is None:
        if end is None or end <= 0:
            raise StorageError("unsatisfiable range")
        return max(0, size - end), size - 1
    if start < 0 or start >= size:
        raise StorageError("unsatisfiable range")
    last = size - 1 if end is None else min(end, size - 1)
    if last < start:
        raise StorageError("unsatisfiable range")
    return start, last


class RecordingStorage(abc.ABC):
    """The port the recorder and the replay endpoints use."""

    @abc.abstractmethod
    def open_write(self, key: str) -> BinaryIO:
        """A new writable, seekable binary file for ``key``.

        Never replaces a recording: raises :class:`KeyExistsError` if ``key`` exists.
        """

    @abc.abstractmethod
    def finalize(self, key: str) -> StoredObject:
        """Called once the file is closed: make it durable and return its size and SHA-256."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The size in bytes; :class:`StorageError` if ``key`` does not exist."""

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A readable, seekable binary file for ``key``; :class:`StorageError` if it does not exist."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it does not exist."""

    def local_path(self, key: str) -> Path | None:
        """The file on this machine holding ``key``, if the backend has one.

        Not for application code (a remote backend has none): read through
        :meth:`open_read` / :meth:`iter_range`. Tests and bench tools only.
        """
        return None

    # Shared helpers built on the primitives above.
    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self.open_read(key) as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def resolve_range(self, key: str, start: int | None, end: int | None) -> tuple[int, int]:
        """Turn an HTTP-style inclusive byte range of ``key`` into (start, end_inclusive): see :func:`byte_range`."""
        return byte_range(self.size(key), start, end)

    def iter_range(
        self, key: str, start: int | None = None, end: int | None = None, chunk_size: int = 256 * 1024
    ) -> Iterator[bytes]:
        """Yield the bytes ``start..end`` (inclusive), resolved as :meth:`resolve_range` does.

        No ``start`` and no ``end``: the whole object (nothing for an empty one);
        ``end=None``: to the end. The object is opened on the first ``next()``.
        """
        first, last = self.resolve_range(key, start, end)
        remaining = last - first + 1
        with self.open_read(key) as fh:
            fh.seek(first)
            while remaining > 0:
                data = fh.read(min(chunk_size, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data

    def read_range(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return b"".join(self.iter_range(key, start, end))


class LocalDirStorage(RecordingStorage):
    """Recordings as files under one folder (the embedded default)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def open_write(self, key: str) -> BinaryIO:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: each write the muxer makes is a write(2), so it survives a
        # crash of this process (the kernel has it); fsync is the writer's job.
        # Exclusive: a crashed session's file is never overwritten.
        try:
            return open(path, "x+b", buffering=0)  # noqa: SIM115
        except FileExistsError:
            raise KeyExistsError(f"recording exists: {key}") from None

    def finalize(self, key: str) -> StoredObject:
        path = self.path(key)
        if not path.is_file():
            raise StorageError(f"no such recording: {key}")
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        _fsync_dir(path.parent)
        return StoredObject(key=key, size_bytes=size, sha256=digest.hexdigest())

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise StorageError(f"no such recording: {key}") from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise StorageError(f"no such recording: {key}") from None

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "KeyExistsError",
    "LocalDirStorage",
    "RecordingStorage",
    "StorageError",
    "StoredObject",
    "byte_range",
    "validate_key",
]
