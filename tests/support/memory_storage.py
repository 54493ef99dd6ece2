"""A recording storage with no files on this machine (``local_path`` is None), like a remote backend.

Implements only the abstract primitives of :class:`RecordingStorage`, so the shared helpers
(sha256, resolve_range, iter_range, read_range) and everything built on the port are exercised
the way an S3-compatible backend would be.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import BinaryIO

from recordings.storage import (
    KeyExistsError,
    RecordingStorage,
    StorageError,
    StoredObject,
    validate_key,
)


class _Upload(io.BytesIO):
    def __init__(self, store: MemoryStorage, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self._store._put(self._key, self.getvalue())

    def close(self) -> None:
        if not self.closed:
            self._store._put(self._key, self.getvalue())
        super().close()


class MemoryStorage(RecordingStorage):
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.finalized: set[str] = set()
        self._lock = threading.Lock()

    def _put(self, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[key] = data

    def _get(self, key: str) -> bytes:
        try:
            return self.objects[validate_key(key)]
        except KeyError:
            raise StorageError(f"no such recording: {key}") from None

    def open_write(self, key: str) -> BinaryIO:
        validate_key(key)
        with self._lock:
            if key in self.objects:
                raise KeyExistsError(f"recording exists: {key}")
            self.objects[key] = b""
        return _Upload(self, key)

    def finalize(self, key: str) -> StoredObject:
        data = self._get(key)
        self.finalized.add(key)
        return StoredObject(key=key, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def exists(self, key: str) -> bool:
        return validate_key(key) in self.objects

    def size(self, key: str) -> int:
        return len(self._get(key))

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self._get(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(validate_key(key), None)
            self.finalized.discard(key)
