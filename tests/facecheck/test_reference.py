"""Reference photo validation: a good photo gives an encoding, bad ones a typed error."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from vbranch.facecheck import ReferencePhotoError, analyse_reference, face_distance
from vbranch.facecheck.testing import encode_jpeg, encode_png

from .helpers import rescale, side_by_side


def code_of(image_bytes: bytes, **kwargs) -> str:
    with pytest.raises(ReferencePhotoError) as info:
        analyse_reference(image_bytes, **kwargs)
    assert info.value.message
    return info.value.code


def test_astronaut_jpeg_gives_a_128_d_encoding(astro):
    ref = analyse_reference(encode_jpeg(astro))
    assert ref.encoding.shape == (128,)
    assert ref.image_size == (512, 512)
    top, right, bottom, left = ref.box
    assert 150 < (left + right) / 2 < 300 and 60 < (top + bottom) / 2 < 200  # the face, not the suit
    assert ref.face_px >= 80
    assert len(ref.encoding_list()) == 128


def test_png_and_jpeg_of_the_same_photo_agree(astro, astro_ref):
    ref = analyse_reference(encode_png(astro))
    assert face_distance(ref.encoding, astro_ref.encoding) < 0.1


def test_grace_hopper_is_accepted_too(hopper_ref):
    assert hopper_ref.face_px > 150


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not an image at all, just some text bytes",
        b"GIF89a" + bytes(200),
        b"\xff\xd8\xff\xe0" + bytes(300),  # JPEG magic, garbage after
    ],
    ids=["empty", "text", "gif", "broken-jpeg"],
)
def test_unreadable(payload):
    assert code_of(payload) == "unreadable"


def test_bmp_is_unreadable(astro):
    ok, buf = cv2.imencode(".bmp", astro)
    assert code_of(buf.tobytes()) == "unreadable"


def test_truncated_jpeg_is_unreadable(astro):
    data = encode_jpeg(astro)
    assert code_of(data[: len(data) // 3]) == "unreadable"
    assert code_of(data[:200]) == "unreadable"


def test_no_face():
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8), (0, 0), 3)
    assert code_of(encode_jpeg(noise)) == "no_face"
    assert code_of(encode_png(np.full((300, 300, 3), 128, np.uint8))) == "no_face"


def test_multiple_faces(astro, hopper):
    both = side_by_side(astro, hopper, height=512)
    assert code_of(encode_jpeg(both)) == "multiple_faces"


def test_face_too_small(astro):
    small = rescale(astro, 0.5)  # the face becomes about 45 px
    assert code_of(encode_jpeg(small)) == "face_too_small"


def test_face_size_limit_is_a_parameter(astro):
    data = encode_jpeg(astro)  # face about 90 px
    assert code_of(data, min_face_px=120) == "face_too_small"
    assert analyse_reference(data, min_face_px=60).face_px < 120


def test_large_photo_is_handled_and_measured_in_its_own_pixels(astro, astro_ref):
    big = rescale(astro, 3.0)  # 1536 px: detection runs on a 1024 px copy
    ref = analyse_reference(encode_jpeg(big))
    assert ref.image_size == (1536, 1536)
    assert 2.5 * astro_ref.face_px < ref.face_px < 3.5 * astro_ref.face_px
    assert face_distance(ref.encoding, astro_ref.encoding) < 0.2


def test_error_survives_pickling():
    err = pickle.loads(pickle.dumps(ReferencePhotoError("no_face", "nothing there")))
    assert (err.code, err.message, str(err)) == ("no_face", "nothing there", "nothing there")
    with pytest.raises(ValueError):
        ReferencePhotoError("bogus", "x")


def test_exif_orientation_is_applied(astro):
    import io

    from PIL import Image

    # store the photo lying on its side with an EXIF tag saying "rotate 90° clockwise to view"
    sideways = Image.fromarray(np.ascontiguousarray(astro[:, :, ::-1])).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", quality=92, exif=exif)
    ref = analyse_reference(buf.getvalue())
    assert ref.face_px >= 80
