"""Pure geometry on dlib's 68-point landmarks (no I/O, numpy only).

Landmark indices (0-based, iBUG 300-W layout, as dlib and face_recognition use):

- 0-16 jaw outline, from the *image's* left to the image's right; on an
  unmirrored camera image (what a browser sends) point 0 is on the person's
  right cheek and point 16 on the person's left cheek;
- 17-26 brows, 27-30 nose bridge (30 = nose tip), 31-35 nostrils;
- 36-41 the eye on the image's left, 42-47 the eye on the image's right;
- 48-59 outer lip, 60-67 inner lip.

Every measure here is built to be unchanged by an affine map of the whole
landmark set, because a flat photo held to the camera (tilted, turned, moved,
brought closer) only ever moves its landmarks by (nearly) an affine map.  Real
blinks, mouth openings and head turns are not affine: that is what the
liveness judge looks for.
"""

from __future__ import annotations

import numpy as np

JAW = np.arange(0, 17)
EYE_A = np.arange(36, 42)  # image-left eye
EYE_B = np.arange(42, 48)  # image-right eye
NOSE_TIP = 30
CHIN = 8

# Points that hardly move with blinks and mouth openings: used to align a frame
# onto a baseline before measuring eyelids and lips.  Lower jaw (moves with the
# mouth), eyelids and lips are left out.
STABLE = np.array([0, 1, 2, 3, 13, 14, 15, 16, 17, 19, 21, 22, 24, 26, 27, 28, 36, 39, 42, 45])

# Eyelid pairs (upper, lower) and inner-lip pairs (upper, lower).
EYELID_PAIRS = np.array([[37, 41], [38, 40], [43, 47], [44, 46]])
INNER_LIP_PAIRS = np.array([[61, 67], [62, 66], [63, 65]])


def as_landmarks(points) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got {arr.shape}")
    return arr


def interocular(lm: np.ndarray) -> float:
    """Distance between the two eye centres (the unit most measures use)."""
    return float(np.linalg.norm(lm[EYE_A].mean(axis=0) - lm[EYE_B].mean(axis=0)))


def eye_aspect_ratio(lm: np.ndarray) -> float:
    """Mean EAR of both eyes (Soukupová & Čech 2016): about 0.3 open, under 0.2 closed."""
    out = []
    for eye in (EYE_A, EYE_B):
        p = lm[eye]
        vertical = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        horizontal = 2.0 * np.linalg.norm(p[0] - p[3])
        out.append(vertical / horizontal if horizontal > 0 else 0.0)
    return float(np.mean(out))


def mouth_aspect_ratio(lm: np.ndarray) -> float:
    """Inner-lip opening over mouth width: about 0 closed, 0.3 and more wide open."""
    gap = np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in INNER_LIP_PAIRS])
    width = np.linalg.norm(lm[60] - lm[64])
    return float(gap / width) if width > 0 else 0.0


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine map taking src points onto dst points."""
    ones = np.ones((len(src), 1))
    a = np.hstack([src, ones])
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T  # 2x3


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def align_to(lm: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map lm onto reference's frame with the affine fit on the stable points."""
    m = fit_affine(lm[STABLE], reference[STABLE])
    return apply_affine(m, lm)


def eye_opening(lm: np.ndarray, unit: float) -> float:
    """Mean eyelid gap in units of `unit` (use the baseline's interocular distance)."""
    gaps = np.linalg.norm(lm[EYELID_PAIRS[:, 0]] - lm[EYELID_PAIRS[:, 1]], axis=1)
    return float(gaps.mean() / unit) if unit > 0 else 0.0


def mouth_opening(lm: np.ndarray, unit: float) -> float:
    """Mean inner-lip gap in units of `unit`."""
    gaps = np.linalg.norm(lm[INNER_LIP_PAIRS[:, 0]] - lm[INNER_LIP_PAIRS[:, 1]], axis=1)
    return float(gaps.mean() / unit) if unit > 0 else 0.0


def yaw_index(lm: np.ndarray) -> float:
    """Where the nose tip sits across the face, from -1 (at point 0) to +1 (at point 16).

    Barycentric weights of the nose tip in the triangle (jaw 0, jaw 16, chin),
    so the value is unchanged by any affine map (a photo tilted or turned as a
    whole keeps it).  About 0 for a frontal face.  On an unmirrored camera image
    it grows when the person turns to *their own left* (the nose moves toward
    point 16, their left cheek) and falls when they turn to their right.
    """
    a, b, c = lm[0], lm[16], lm[CHIN]
    p = lm[NOSE_TIP]
    t = np.array([[a[0] - c[0], b[0] - c[0]], [a[1] - c[1], b[1] - c[1]]])
    det = np.linalg.det(t)
    if abs(det) < 1e-9:
        return 0.0
    wa, wb = np.linalg.solve(t, p - c)
    return float(wb - wa)


def nonrigid_residual(lm: np.ndarray, reference: np.ndarray) -> float:
    """RMS distance left after the best affine fit of lm onto reference (all 68 points),
    in units of the reference's interocular distance.  Zero for a flat photo moved around."""
    m = fit_affine(lm, reference)
    moved = apply_affine(m, lm)
    unit = interocular(reference)
    if unit <= 0:
        return 0.0
    return float(np.sqrt(np.mean(np.sum((moved - reference) ** 2, axis=1))) / unit)


def median_landmarks(sets: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(sets), axis=0)
