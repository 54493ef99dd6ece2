"""The CPU-heavy part: dlib HOG detection, 68-point landmarks, 128-d encodings.

Runs inside the worker processes (see pool.py); it can also be called directly
(tests, benchmarks, a CLI), in which case the models load on first use.  No file
or network I/O besides loading the models that ship in face_recognition_models.

face_recognition is imported lazily, and only after face_recognition_models has
been imported here: face_recognition's own import prints "Please install
`face_recognition_models` ..." and calls quit() when that import fails, which
would kill a worker silently.  Importing it first turns that into a clear
FaceEngineUnavailable instead.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import yaw_index
from .types import FaceEngineUnavailable, FrameAnalysis, ReferenceFace, ReferencePhotoError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Models:
    detector: Any  # dlib.fhog_object_detector
    predictor: Any  # dlib.shape_predictor (68 points)
    encoder: Any  # dlib.face_recognition_model_v1


_models: Models | None = None
_lock = threading.Lock()
_pil_lock = threading.Lock()


def load_models() -> Models:
    """Load (once per process) the detector, the 68-point predictor and the encoder."""
    global _models
    if _models is not None:
        return _models
    with _lock:
        if _models is not None:
            return _models
        with warnings.catch_warnings():
            # pkg_resources (used by face_recognition_models) warns about its own deprecation
            warnings.simplefilter("ignore")
            try:
                import face_recognition_models  # noqa: F401  (must come before face_recognition)
            except Exception as exc:  # pragma: no cover - depends on the installation
                raise FaceEngineUnavailable(
                    "face_recognition_models cannot be imported "
                    f"({type(exc).__name__}: {exc}); it needs setuptools<82 for pkg_resources"
                ) from exc
            try:
                import face_recognition.api as fr
            except Exception as exc:  # pragma: no cover
                raise FaceEngineUnavailable(f"face_recognition cannot be imported: {exc}") from exc
        try:
            import cv2

            cv2.setNumThreads(1)  # workers share a small machine; one thread each
        except Exception:  # pragma: no cover
            pass
        _models = Models(fr.face_detector, fr.pose_predictor_68_point, fr.face_encoder)
        return _models


def init_worker() -> None:
    """ProcessPoolExecutor initializer: load the models once per worker."""
    load_models()


def worker_ping() -> int:
    """Cheap task used to start and warm up workers; returns the worker's pid."""
    import os

    load_models()
    time.sleep(0.05)  # long enough that concurrent pings spread over the workers
    return os.getpid()


# --------------------------------------------------------------------------- helpers


def _css(rect, scale: float = 1.0) -> tuple[int, int, int, int]:
    return (
        int(round(rect.top() * scale)),
        int(round(rect.right() * scale)),
        int(round(rect.bottom() * scale)),
        int(round(rect.left() * scale)),
    )


def _rect(box: tuple[int, int, int, int]):
    import dlib

    top, right, bottom, left = box
    return dlib.rectangle(int(left), int(top), int(right), int(bottom))


def _short_side(box: tuple[int, int, int, int]) -> int:
    top, right, bottom, left = box
    return min(right - left, bottom - top)


def _area(box: tuple[int, int, int, int]) -> int:
    top, right, bottom, left = box
    return (right - left) * (bottom - top)


def _shape_points(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if width < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


# --------------------------------------------------------------------------- reference


def decode_image(image_bytes: bytes, *, max_pixels: int = 40_000_000) -> np.ndarray:
    """JPEG/PNG bytes to an RGB array, EXIF orientation applied.  Raises ReferencePhotoError."""
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)) or len(image_bytes) < 16:
        raise ReferencePhotoError("unreadable", "the reference photo is empty or too short")
    data = bytes(image_bytes)
    if not (data.startswith(JPEG_MAGIC) or data.startswith(PNG_MAGIC)):
        raise ReferencePhotoError("unreadable", "the reference photo is not a JPEG or PNG image")
    from PIL import Image, ImageFile, ImageOps

    try:
        with warnings.catch_warnings(), _pil_lock:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # face_recognition switches on LOAD_TRUNCATED_IMAGES globally; a cut-off
            # reference photo must be refused, not padded with grey
            truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                img = Image.open(io.BytesIO(data))
                if img.format not in ("JPEG", "PNG"):
                    raise ReferencePhotoError("unreadable", "the reference photo is not a JPEG or PNG image")
                if img.width * img.height > max_pixels:
                    raise ReferencePhotoError(
                        "unreadable", f"the reference photo is too large ({img.width}x{img.height})"
                    )
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
            img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"))
    except ReferencePhotoError:
        raise
    except Exception as exc:
        raise ReferencePhotoError("unreadable", f"the reference photo cannot be decoded: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[0] < 16 or rgb.shape[1] < 16:
        raise ReferencePhotoError("unreadable", "the reference photo is too small")
    return np.ascontiguousarray(rgb)


def analyse_reference(
    image_bytes: bytes,
    *,
    min_face_px: int = 80,
    detect_max_side: int = 1024,
    encode_max_side: int = 2048,
    min_score: float = 0.5,
    secondary_face_ratio: float = 0.4,
    num_jitters: int = 1,
    max_pixels: int = 40_000_000,
) -> ReferenceFace:
    """Validate a reference (ID/KYC) photo and encode its face.

    - ``unreadable``: not a decodable JPEG/PNG (or absurdly large);
    - ``no_face``: no face with a HOG score of at least ``min_score``;
    - ``multiple_faces``: another face at least ``secondary_face_ratio`` times the
      size of the largest one (smaller background faces are ignored);
    - ``face_too_small``: the largest face's box is under ``min_face_px`` on its
      short side, in the photo's own pixels.

    Detection runs on a copy scaled to ``detect_max_side`` with one upsampling, so
    faces down to about 40 px are found (and reported as too small rather than
    missing).
    """
    rgb = decode_image(image_bytes, max_pixels=max_pixels)
    models = load_models()
    h, w = rgb.shape[:2]

    det_scale = min(1.0, detect_max_side / max(h, w))
    det_img = rgb if det_scale == 1.0 else _resize(rgb, max(1, round(w * det_scale)), max(1, round(h * det_scale)))
    rects, scores, _ = models.detector.run(det_img, 1, 0.0)
    faces = [
        (_css(r, 1.0 / det_scale), float(s)) for r, s in zip(rects, scores) if s >= min_score
    ]
    if not faces:
        raise ReferencePhotoError("no_face", "no face found in the reference photo")
    faces.sort(key=lambda f: _area(f[0]), reverse=True)
    box, score = faces[0]
    main = _short_side(box)
    others = [f for f in faces[1:] if _short_side(f[0]) >= secondary_face_ratio * main]
    if others:
        raise ReferencePhotoError(
            "multiple_faces", f"{len(others) + 1} faces found in the reference photo; it must show one person"
        )
    if main < min_face_px:
        raise ReferencePhotoError(
            "face_too_small", f"the face in the reference photo is {main} px; at least {min_face_px} px needed"
        )

    enc_scale = min(1.0, encode_max_side / max(h, w))
    enc_img = rgb if enc_scale == 1.0 else _resize(rgb, round(w * enc_scale), round(h * enc_scale))
    top, right, bottom, left = box
    enc_box = (
        round(top * enc_scale), round(right * enc_scale), round(bottom * enc_scale), round(left * enc_scale)
    )
    shape = models.predictor(enc_img, _rect(enc_box))
    encoding = np.array(models.encoder.compute_face_descriptor(enc_img, shape, num_jitters), dtype=np.float64)
    return ReferenceFace(encoding=encoding, box=box, image_size=(w, h), score=score)


# --------------------------------------------------------------------------- live frames


def analyse_frame(
    frame_bgr: np.ndarray,
    *,
    want_encoding: bool = False,
    detect_width: int = 320,
    max_encode_yaw: float = 0.3,
    extra_face_min_score: float = 0.5,
    full_size_fallback: bool = True,
) -> FrameAnalysis:
    """Detect, landmark and (optionally) encode the largest face of a BGR frame.

    Detection uses HOG without upsampling on a copy ``detect_width`` wide (faces
    from about 80 px at that width); when nothing is found there it retries on the
    frame as given.  Landmarks and the encoding are computed on the frame as
    given.  A second face counts when its HOG score reaches ``extra_face_min_score``.
    The encoding is only computed when asked for and the face is near frontal
    (|yaw index| <= ``max_encode_yaw``), because turned faces encode poorly.
    """
    import cv2

    t0 = time.perf_counter()
    models = load_models()
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError("expected an HxWx3 BGR frame")
    h, w = frame_bgr.shape[:2]
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)

    candidates: list[tuple[tuple[int, int, int, int], float]] = []
    if detect_width and w > detect_width:
        scale = detect_width / w
        small = _resize(rgb, detect_width, max(1, round(h * scale)))
        rects, scores, _ = models.detector.run(small, 0, 0.0)
        candidates = [(_css(r, 1.0 / scale), float(s)) for r, s in zip(rects, scores)]
        if not candidates and full_size_fallback:
            rects, scores, _ = models.detector.run(rgb, 0, 0.0)
            candidates = [(_css(r), float(s)) for r, s in zip(rects, scores)]
    else:
        rects, scores, _ = models.detector.run(rgb, 0, 0.0)
        candidates = [(_css(r), float(s)) for r, s in zip(rects, scores)]

    if not candidates:
        return FrameAnalysis(0, None, None, None, None, (w, h), (time.perf_counter() - t0) * 1000)
    candidates.sort(key=lambda f: _area(f[0]), reverse=True)
    box, score = candidates[0]
    faces = 1 + sum(1 for _, s in candidates[1:] if s >= extra_face_min_score)
    shape = models.predictor(rgb, _rect(box))
    landmarks = _shape_points(shape)
    encoding = None
    if want_encoding and abs(yaw_index(landmarks.astype(np.float64))) <= max_encode_yaw:
        encoding = np.array(models.encoder.compute_face_descriptor(rgb, shape, 1), dtype=np.float64)
    return FrameAnalysis(faces, box, score, landmarks, encoding, (w, h), (time.perf_counter() - t0) * 1000)
