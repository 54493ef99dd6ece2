"""Identity: the same person is accepted across image variants, another person is not."""

from __future__ import annotations

import numpy as np
import pytest

from vbranch.facecheck import FaceCheckConfig, analyse_frame, face_distance, vote_identity
from vbranch.facecheck.testing import face_frame

from .helpers import brightness, jpeg, rescale, rotate

ASTRO_BOX = (83, 267, 171, 179)
HOPPER_BOX = (137, 377, 353, 161)
THRESHOLD = FaceCheckConfig().threshold

VARIANTS = {
    "frame": lambda astro, fr: fr,
    "face-small": lambda astro, fr: face_frame(astro, ASTRO_BOX, face_fraction=0.18),
    "face-large": lambda astro, fr: face_frame(astro, ASTRO_BOX, face_fraction=0.5),
    "photo-x1.8": lambda astro, fr: rescale(astro, 1.8),
    "jpeg-q15": lambda astro, fr: jpeg(fr, 15),
    "jpeg-q35": lambda astro, fr: jpeg(fr, 35),
    "darker": lambda astro, fr: brightness(fr, 0.55),
    "brighter": lambda astro, fr: brightness(fr, 1.3, 30),
    "rot-10": lambda astro, fr: rotate(fr, -10),
    "rot+7": lambda astro, fr: rotate(fr, 7),
    "combined": lambda astro, fr: jpeg(brightness(rotate(fr, -6), 0.8), 40),
}


def encode(frame: np.ndarray) -> np.ndarray:
    res = analyse_frame(frame, want_encoding=True)
    assert res.faces == 1, "one face expected"
    assert res.encoding is not None
    return res.encoding


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_person_accepted(variant, astro, astro_frame_bgr, astro_ref):
    frame = VARIANTS[variant](astro, astro_frame_bgr)
    d = face_distance(astro_ref.encoding, encode(frame))
    assert d < THRESHOLD, f"{variant}: distance {d:.3f}"


def test_other_person_rejected(hopper, astro_ref, hopper_ref):
    assert face_distance(astro_ref.encoding, hopper_ref.encoding) > THRESHOLD
    for frame in (hopper, face_frame(hopper, HOPPER_BOX, face_fraction=0.35)):
        d = face_distance(astro_ref.encoding, encode(frame))
        assert d > THRESHOLD, f"distance {d:.3f}"


def test_vote_over_frames(astro, astro_frame_bgr, hopper, astro_ref):
    same = [face_distance(astro_ref.encoding, encode(f)) for f in (jpeg(astro_frame_bgr, 30), rotate(astro_frame_bgr, 4), brightness(astro_frame_bgr, 0.8))]
    other = [face_distance(astro_ref.encoding, encode(f)) for f in (hopper, jpeg(hopper, 30), rotate(hopper, 4))]
    assert vote_identity(same, THRESHOLD).match
    assert not vote_identity(other, THRESHOLD).match
    # one stray frame does not flip a majority
    assert vote_identity(same + other[:1], THRESHOLD).match
    assert not vote_identity(other + same[:1], THRESHOLD).match


def test_threshold_is_configurable(astro_ref, hopper_ref):
    d = face_distance(astro_ref.encoding, hopper_ref.encoding)
    assert not vote_identity([d] * 3, 0.5).match
    assert vote_identity([d] * 3, 0.75).match


def test_vote_rules():
    v = vote_identity([0.3, 0.4, 0.6], 0.5, min_frames=3)
    assert v.match and v.distance == pytest.approx(0.4) and v.frames_used == 3 and v.frames_accepted == 2
    assert not vote_identity([0.3, 0.6], 0.5, min_frames=2).match  # a tie is not a majority
    undecided = vote_identity([0.1, 0.1], 0.5, min_frames=3)
    assert not undecided.match and not undecided.decided and undecided.distance == pytest.approx(0.1)
    empty = vote_identity([], 0.5)
    assert not empty.match and empty.distance is None


def test_distance_validates_shapes():
    with pytest.raises(ValueError):
        face_distance(np.zeros(128), np.zeros(127))
    assert face_distance(np.zeros(128), np.ones(128)) == pytest.approx(np.sqrt(128))
