"""Frame conversion: numpy BGR arrays or av.VideoFrame in, small BGR arrays out."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_small_bgr(frame: Any, width: int = 480) -> np.ndarray:
    """A contiguous uint8 HxWx3 BGR copy at most ``width`` pixels wide.

    Accepts numpy arrays (HxWx3 BGR, HxWx4 BGRA or HxW gray, uint8) and
    av.VideoFrame (any pixel format; scaled and converted by libswscale in one
    step, which is far cheaper than converting the full frame first).
    """
    if isinstance(frame, np.ndarray):
        import cv2

        arr = frame
        if arr.dtype != np.uint8:
            raise TypeError("frames must be uint8")
        if arr.ndim == 2:
            arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise TypeError(f"unsupported frame shape {arr.shape}")
        h, w = arr.shape[:2]
        if width and w > width:
            height = max(2, round(h * width / w))
            return cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(arr).copy()
    if hasattr(frame, "reformat") and hasattr(frame, "to_ndarray"):  # av.VideoFrame
        w, h = int(frame.width), int(frame.height)
        if width and w > width:
            height = max(2, round(h * width / w / 2) * 2)
            return frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
        return frame.to_ndarray(format="bgr24")
    raise TypeError(f"unsupported frame type {type(frame).__name__}")
