"""Fixtures for the face check tests: sample photos, a reference, a worker pool."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vbranch.facecheck import FaceCheckPool, engine
from vbranch.facecheck.testing import astronaut_bgr, astronaut_frame, encode_jpeg, grace_hopper_bgr


@pytest.fixture(scope="session")
def astro() -> np.ndarray:
    return astronaut_bgr()


@pytest.fixture(scope="session")
def hopper() -> np.ndarray:
    return grace_hopper_bgr()


@pytest.fixture(scope="session")
def astro_ref(astro):
    return engine.analyse_reference(encode_jpeg(astro))


@pytest.fixture(scope="session")
def hopper_ref(hopper):
    return engine.analyse_reference(encode_jpeg(hopper))


@pytest.fixture(scope="session")
def astro_frame_bgr() -> np.ndarray:
    return astronaut_frame()


@pytest.fixture(scope="session")
def astro_landmarks(astro_frame_bgr) -> np.ndarray:
    """The 68 landmarks the detector finds in the astronaut video frame."""
    res = engine.analyse_frame(astro_frame_bgr)
    assert res.landmarks is not None
    return res.landmarks.astype(np.float64)


@pytest.fixture(scope="session")
def pool():
    """One worker process (spawned, models loaded once) shared by the runner tests."""
    p = FaceCheckPool(workers=1)
    asyncio.run(p.start())
    yield p
    p.close()


@pytest.fixture(scope="session")
def puppet(astro_frame_bgr, astro_landmarks):
    from vbranch.facecheck.testing import Puppet

    return Puppet(astro_frame_bgr, astro_landmarks)
