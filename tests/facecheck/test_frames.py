"""Frame conversion and per-frame analysis."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vbranch.facecheck import analyse_frame, face_distance
from vbranch.facecheck.frames import to_small_bgr
from vbranch.facecheck.testing import face_frame


def test_numpy_frames_are_downscaled_copies(astro_frame_bgr):
    small = to_small_bgr(astro_frame_bgr, 480)
    assert small.shape == (360, 480, 3) and small.dtype == np.uint8
    same = to_small_bgr(astro_frame_bgr, 800)
    assert same.shape == astro_frame_bgr.shape and same is not astro_frame_bgr
    assert to_small_bgr(astro_frame_bgr[:, :, 0], 480).shape == (360, 480, 3)  # grey
    bgra = np.dstack([astro_frame_bgr, np.full(astro_frame_bgr.shape[:2], 255, np.uint8)])
    assert to_small_bgr(bgra, 480).shape == (360, 480, 3)
    with pytest.raises(TypeError):
        to_small_bgr(astro_frame_bgr.astype(np.float32), 480)
    with pytest.raises(TypeError):
        to_small_bgr("a frame", 480)


@pytest.mark.parametrize("fmt", ["yuv420p", "rgb24", "bgr24"])
def test_av_frames_are_converted(astro_frame_bgr, fmt):
    frame = av.VideoFrame.from_ndarray(astro_frame_bgr, format="bgr24").reformat(format=fmt)
    small = to_small_bgr(frame, 480)
    assert small.shape == (360, 480, 3)
    ref = to_small_bgr(astro_frame_bgr, 480).astype(np.int16)
    assert np.abs(small.astype(np.int16) - ref).mean() < 6  # same picture, same colour order


def test_frame_analysis(astro_frame_bgr, astro_ref):
    res = analyse_frame(to_small_bgr(astro_frame_bgr, 480))
    assert res.faces == 1 and res.has_face
    assert res.landmarks.shape == (68, 2) and res.encoding is None
    assert res.frame_size == (480, 360)
    res = analyse_frame(to_small_bgr(astro_frame_bgr, 480), want_encoding=True)
    assert face_distance(astro_ref.encoding, res.encoding) < 0.5


def test_no_face_frame():
    res = analyse_frame(np.full((360, 480, 3), 90, np.uint8), want_encoding=True)
    assert (res.faces, res.landmarks, res.encoding, res.box) == (0, None, None, None)


def test_two_faces_are_counted(astro, hopper):
    left = face_frame(astro, (83, 267, 171, 179), size=(320, 480), face_fraction=0.6)
    right = face_frame(hopper, (137, 377, 353, 161), size=(320, 480), face_fraction=0.6)
    res = analyse_frame(to_small_bgr(np.hstack([left, right]), 480))
    assert res.faces == 2


def test_turned_faces_are_not_encoded(puppet):
    frame = to_small_bgr(puppet.render("turn_left", 1.0), 480)
    assert analyse_frame(frame, want_encoding=True).encoding is None
    assert analyse_frame(frame, want_encoding=True, max_encode_yaw=1.0).encoding is not None
