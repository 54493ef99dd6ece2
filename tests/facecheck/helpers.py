"""Helpers for the face check tests: image variants and synthetic landmark series."""

from __future__ import annotations

import math

import cv2
import numpy as np

from vbranch.facecheck.testing import posed_landmarks
from vbranch.facecheck.types import LandmarkSample


# ----------------------------------------------------------------- image variants
def rescale(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=interp)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def brightness(img: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    return cv2.convertScaleAbs(img, alpha=gain, beta=offset)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def side_by_side(a: np.ndarray, b: np.ndarray, height: int = 480) -> np.ndarray:
    def fit(img):
        h, w = img.shape[:2]
        return cv2.resize(img, (round(w * height / h), height), interpolation=cv2.INTER_AREA)

    return np.hstack([fit(a), fit(b)])


# ----------------------------------------------------------------- landmark series
def envelope(i: int, start: int, length: int) -> float:
    """0 before start, up to 1 and back to 0 over ``length`` samples."""
    k = i - start
    if k < 0 or k >= length:
        return 0.0
    return math.sin(math.pi * (k + 0.5) / length)


def action_series(
    lm: np.ndarray,
    action: str | None,
    n: int = 14,
    start: int = 5,
    length: int = 5,
    amount: float = 1.0,
    noise_px: float = 0.0,
    seed: int = 0,
    dt: float = 1 / 6,
) -> list[LandmarkSample]:
    """n samples dt apart: neutral, then ``action`` rising and falling from ``start``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = amount * envelope(i, start, length) if action else 0.0
        pts = posed_landmarks(lm, action, a) if action else np.array(lm, dtype=np.float64)
        if noise_px:
            pts = pts + rng.normal(0, noise_px, pts.shape)
        out.append(LandmarkSample(t=i * dt, landmarks=pts))
    return out


def affine_about(lm: np.ndarray, angle_deg: float = 0.0, scale: float = 1.0, sx: float = 1.0, sy: float = 1.0,
                 shear: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """Move a landmark set as a flat photo would move: rotate, scale, squash (tilt), shear, shift."""
    c = lm.mean(axis=0)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = rot @ np.array([[sx, shear], [0, sy]]) * scale
    return (lm - c) @ m.T + c + np.array([tx, ty])


def photo_series(lm: np.ndarray, n: int = 16, dt: float = 1 / 6) -> list[LandmarkSample]:
    """A photo waved, tilted and turned in front of the camera (affine moves only)."""
    out = []
    for i in range(n):
        p = i / (n - 1)
        pts = affine_about(
            lm,
            angle_deg=12 * math.sin(2 * math.pi * p),
            scale=1 + 0.15 * math.sin(math.pi * p),
            sx=1 - 0.35 * math.sin(math.pi * p),  # turned about its vertical axis
            sy=1 - 0.4 * math.sin(2 * math.pi * p) ** 2,  # tilted back and forth
            shear=0.1 * math.sin(3 * math.pi * p),
            tx=30 * p,
            ty=-20 * p,
        )
        out.append(LandmarkSample(t=i * dt, landmarks=pts))
    return out
