"""The aiortc media hub: one peer connection per party, encoded-frame forwarding,
crash-safe recording, decode-on-demand taps.

- :mod:`vbranch.media.hub` - :class:`MediaHub`, the API the signaling server calls
- :mod:`vbranch.media.forwarding` - receive hook, :class:`ForwardTrack`, keyframe relay
- :mod:`vbranch.media.recorder` - per-party recording (:class:`RecordingResult`)
- :mod:`vbranch.media.tap` - decoded video for the face check
- :mod:`vbranch.media.stock` - aiortc's stock relay and recorder (``mode="stock"``, for bench/media.py)
- :mod:`vbranch.media.synthetic` - pre-encoded clips and client peers (tests, bench)

Names are imported lazily so ``import vbranch.media`` does not load aiortc.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MediaError", "MediaHub", "RecordingResult"]


def __getattr__(name: str) -> Any:
    if name in ("MediaHub", "MediaError"):
        from . import hub

        return getattr(hub, name)
    if name == "RecordingResult":
        from .recorder import RecordingResult

        return RecordingResult
    raise AttributeError(name)
