from __future__ import annotations

import pytest

from recordings.storage import LocalDirStorage
from vbranch.media.hub import MediaHub

from .helpers import EventLog, make_clip


@pytest.fixture(scope="session")
def clip():
    """8 s of 320x240 15 fps VP8 (one key frame) + Opus, encoded once per test run."""
    return make_clip(320, 240, 15, 8.0, 300_000)


@pytest.fixture
def storage(tmp_path):
    return LocalDirStorage(tmp_path / "recordings")


@pytest.fixture
def events():
    return EventLog()


@pytest.fixture
async def hub(storage, events):
    hub = MediaHub(storage, ice_servers=[], on_event=events)
    yield hub
    await hub.close()
