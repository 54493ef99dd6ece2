"""Test and benchmark support: sample faces and a "puppet" that animates a photo.

Nothing here is used in production.  The photos are public-domain images that
ship inside installed packages (scikit-image's astronaut, Eileen Collins;
matplotlib's Grace Hopper), so nothing is downloaded.  Needs scikit-image and
matplotlib (test extras) for the photos, OpenCV for the warps.

The Puppet turns one photo into a video whose face can blink, open its mouth
and turn left or right: each action is a piecewise-affine warp driven by the
face's 68 landmarks (triangles over the landmarks and a ring of fixed anchor
points), precomputed once as a displacement field and blended per frame, so a
frame costs one cv2.remap.  The real detector then sees the action in the
pixels, which is what the runner and the benchmark need.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import numpy as np

from .types import Action


def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain), 512x512 BGR."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def grace_hopper_bgr() -> np.ndarray:
    """matplotlib's Grace Hopper sample (public domain), 512x600 BGR."""
    import cv2
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        raw = fh.read()
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)


def encode_jpeg(img_bgr: np.ndarray, quality: int = 92) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def encode_png(img_bgr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img_bgr)
    assert ok
    return buf.tobytes()


def face_frame(
    img_bgr: np.ndarray,
    box: tuple[int, int, int, int],
    size: tuple[int, int] = (640, 480),
    face_fraction: float = 0.3,
) -> np.ndarray:
    """A video-call-like frame: the photo cropped around ``box`` (top, right, bottom,
    left) and scaled so the face is ``face_fraction`` of the frame width."""
    import cv2

    top, right, bottom, left = box
    fw, fh = size
    face_w = right - left
    crop_w = face_w / face_fraction
    cx = (left + right) / 2
    cy = (top + bottom) / 2 + 0.08 * face_w  # a little more room above the head
    s = fw / crop_w
    m = np.array([[s, 0, fw / 2 - s * cx], [0, s, fh / 2 - s * cy]], dtype=np.float64)
    return cv2.warpAffine(img_bgr, m, (fw, fh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def astronaut_frame(size: tuple[int, int] = (640, 480), face_fraction: float = 0.3) -> np.ndarray:
    """The astronaut as a 640x480 video-call frame (face about 190 px wide)."""
    return face_frame(astronaut_bgr(), (83, 267, 171, 179), size, face_fraction)


def _triangles(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    subdiv = cv2.Subdiv2D((-1, -1, w + 2, h + 2))
    lookup = {}
    for i, (x, y) in enumerate(points):
        subdiv.insert((float(x), float(y)))
        lookup[(round(float(x), 2), round(float(y), 2))] = i
    tris = []
    for t in subdiv.getTriangleList():
        idx = []
        for k in range(3):
            key = (round(float(t[2 * k]), 2), round(float(t[2 * k + 1]), 2))
            if key not in lookup:
                break
            idx.append(lookup[key])
        if len(idx) == 3:
            tris.append(idx)
    return np.array(tris, dtype=np.int32)


def piecewise_affine_field(
    src: np.ndarray, dst: np.ndarray, tris: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Displacement field d (H, W, 2) such that output(p) = input(p + d(p)) moves src points to dst."""
    import cv2

    w, h = size
    labels = np.full((h, w), -1, dtype=np.int32)
    mats = np.zeros((len(tris), 2, 3), dtype=np.float64)
    for k, tri in enumerate(tris):
        d = dst[tri].astype(np.float32)
        s = src[tri].astype(np.float32)
        e1, e2 = d[1] - d[0], d[2] - d[0]
        area = abs(float(e1[0] * e2[1] - e1[1] * e2[0]))
        if area < 1e-3:
            continue
        mats[k] = cv2.getAffineTransform(d, s)  # output (dst) pixel -> input (src) pixel
        cv2.fillConvexPoly(labels, np.round(d).astype(np.int32), k)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((h, w, 2), dtype=np.float64)
    inside = labels >= 0
    m = mats[labels[inside]]
    x = xs[inside]
    y = ys[inside]
    field[inside, 0] = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2] - x
    field[inside, 1] = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2] - y
    return field.astype(np.float32)


def posed_landmarks(landmarks: np.ndarray, action: Action | str, amount: float = 1.0, turn_amount: float = 0.45) -> np.ndarray:
    """The 68 landmarks of a face performing ``action`` to the degree ``amount`` (0-1).

    Pure numpy: eyelids meet (blink), lower lip and chin drop by 0.45 interocular
    distances (open_mouth), or the inner face slides sideways by ``turn_amount``
    half face widths at the nose tip, less for eyes, brows and mouth, while the
    outline stays (a head turn seen from the front).  turn_left is the person's
    own left: toward the image's right on an unmirrored camera image.
    """
    lm = np.array(landmarks, dtype=np.float64)
    base = lm.copy()
    action = Action(action)
    iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    if action is Action.BLINK:
        for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
            mid = (base[upper] + base[lower]) / 2
            lm[upper] = mid + np.array([0, -0.01 * iod])
            lm[lower] = mid + np.array([0, 0.01 * iod])
    elif action is Action.OPEN_MOUTH:
        drop = 0.45 * iod
        for i in (65, 66, 67, 55, 56, 57, 58, 59):
            lm[i, 1] += drop
        for i, f in zip(range(4, 13), (0.2, 0.45, 0.7, 0.9, 1.0, 0.9, 0.7, 0.45, 0.2)):
            lm[i, 1] += drop * f
        for i in (48, 54, 60, 64):
            lm[i, 1] += drop * 0.35
    else:
        sign = 1.0 if action is Action.TURN_LEFT else -1.0
        half = (base[16, 0] - base[0, 0]) / 2
        shift = sign * turn_amount * half
        weights = np.zeros(68)
        weights[27:36] = 1.0  # nose
        weights[[28, 29]] = 0.9
        weights[27] = 0.6
        weights[36:48] = 0.45  # eyes
        weights[17:27] = 0.35  # brows
        weights[48:68] = 0.6  # mouth
        weights[5:12] = 0.25  # the lower jaw follows a little
        weights[8] = 0.35
        lm[:, 0] += shift * weights
    amount = float(min(max(amount, 0.0), 1.0))
    return base + amount * (lm - base)


class Puppet:
    """Animate a face frame: ``render(action, amount)`` with amount in [0, 1].

    ``landmarks`` are the frame's 68 points (e.g. from engine.analyse_frame).
    Directions follow the customer's own left/right on an unmirrored camera image:
    turn_left moves the inner face toward the image's right.
    """

    def __init__(self, frame_bgr: np.ndarray, landmarks: np.ndarray, turn_amount: float = 0.45) -> None:
        self.frame = frame_bgr
        h, w = frame_bgr.shape[:2]
        self.size = (w, h)
        lm = np.asarray(landmarks, dtype=np.float64)
        self.landmarks = lm
        iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
        self.iod = iod
        # anchors: frame border and a ring around the face, kept fixed
        x0, y0 = lm[:, 0].min(), lm[:, 1].min()
        x1, y1 = lm[:, 0].max(), lm[:, 1].max()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rx, ry = (x1 - x0) * 0.85, (y1 - y0) * 0.95
        ring = [(cx + rx * math.cos(a), cy - 0.1 * ry + ry * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
        border = [(0, 0), (w / 2, 0), (w - 1, 0), (w - 1, h / 2), (w - 1, h - 1), (w / 2, h - 1), (0, h - 1), (0, h / 2)]
        anchors = np.array(
            [(min(max(x, 0), w - 1), min(max(y, 0), h - 1)) for x, y in ring] + border, dtype=np.float64
        )
        self.src = np.vstack([lm, anchors])
        self.tris = _triangles(self.src, self.size)
        self.targets = {a: self._target(a, turn_amount) for a in Action}
        self.fields = {
            a: piecewise_affine_field(self.src, dst, self.tris, self.size) for a, dst in self.targets.items()
        }
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._grid = np.dstack([xs, ys])

    def _target(self, action: Action, turn_amount: float) -> np.ndarray:
        dst = self.src.copy()
        dst[:68] = posed_landmarks(self.landmarks, action, 1.0, turn_amount)
        return dst

    def render(self, action: Action | str | None, amount: float) -> np.ndarray:
        import cv2

        if action is None or amount <= 0:
            return self.frame.copy()
        action = Action(action)
        amount = float(min(max(amount, 0.0), 1.0))
        maps = self._grid + amount * self.fields[action]
        out = cv2.remap(self.frame, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if action is Action.OPEN_MOUTH and amount > 0.2:
            lm = self.landmarks + amount * (self.targets[action][:68] - self.landmarks)
            inner = np.round(lm[60:68]).astype(np.int32)
            cv2.fillPoly(out, [inner], (25, 20, 45), lineType=cv2.LINE_AA)
        return out


def action_envelope(t: float, duration: float = 1.2) -> float:
    """Amount of an action t seconds after it started: up, hold, back down."""
    if t <= 0 or t >= duration:
        return 0.0
    ramp = duration * 0.25
    if t < ramp:
        return t / ramp
    if t > duration - ramp:
        return (duration - t) / ramp
    return 1.0


class PuppetCamera:
    """A fake camera that plays a Puppet at ``fps`` and performs each challenge it is sent.

    ``frames()`` is an async iterator of BGR frames (paced in real time);
    ``send_challenge`` is a matching FaceCheckSession callback.  ``react_after_s``
    is the customer's reaction time; ``perform`` decides per action whether the
    puppet obeys (True), does nothing (False), or does another action (a string).
    ``jitter`` adds a little sensor noise so frames are not bit-identical.
    """

    def __init__(
        self,
        puppet: Puppet,
        fps: float = 15.0,
        react_after_s: float = 0.4,
        duration_s: float = 1.2,
        perform: Callable[[str], bool | str] | None = None,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.puppet = puppet
        self.fps = fps
        self.react_after_s = react_after_s
        self.duration_s = duration_s
        self.perform = perform or (lambda action: True)
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)
        self.sent: list[tuple[str, float]] = []
        self._current: tuple[str, float] | None = None
        self.stopped = False

    async def send_challenge(self, action: str, timeout_s: float) -> None:
        import time

        self.sent.append((str(action), timeout_s))
        decision = self.perform(str(action))
        if decision is True:
            self._current = (str(action), time.monotonic() + self.react_after_s)
        elif isinstance(decision, str):
            self._current = (decision, time.monotonic() + self.react_after_s)
        else:
            self._current = None

    def frame_at(self, now: float) -> np.ndarray:
        action, amount = None, 0.0
        if self._current is not None:
            action, start = self._current
            amount = action_envelope(now - start, self.duration_s)
        frame = self.puppet.render(action, amount)
        if self.jitter:
            noise = self.rng.normal(0, self.jitter, frame.shape)
            frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return frame

    async def frames(self, max_s: float = 60.0) -> AsyncIterator[np.ndarray]:
        import asyncio
        import time

        start = time.monotonic()
        n = 0
        while not self.stopped and time.monotonic() - start < max_s:
            yield self.frame_at(time.monotonic())
            n += 1
            delay = start + n / self.fps - time.monotonic()
            await asyncio.sleep(max(0.0, delay))


def puppet_video_track(camera: PuppetCamera):
    """An aiortc VideoStreamTrack playing ``camera`` (for tests over a real peer
    connection): add it to the customer's RTCPeerConnection and route the server's
    facecheck.challenge messages to ``camera.send_challenge``."""
    import time

    import av
    from aiortc import VideoStreamTrack

    class PuppetTrack(VideoStreamTrack):
        kind = "video"

        async def recv(self):
            pts, time_base = await self.next_timestamp()
            frame = av.VideoFrame.from_ndarray(camera.frame_at(time.monotonic()), format="bgr24")
            frame.pts = pts
            frame.time_base = time_base
            return frame

    return PuppetTrack()


def puppet_clip(
    puppet: Puppet,
    sequence: tuple[str | None, ...] = (None, "blink", "turn_left", "open_mouth", "turn_right"),
    fps: float = 15.0,
    action_s: float = 1.2,
    gap_s: float = 0.6,
) -> list[np.ndarray]:
    """Frames of the puppet performing ``sequence`` in turn (None = hold still),
    e.g. to write a fake-camera file with write_y4m."""
    frames = []
    for action in sequence:
        n = round((action_s + gap_s) * fps)
        for i in range(n):
            t = i / fps
            frames.append(puppet.render(action, action_envelope(t, action_s) if action else 0.0))
    return frames


def write_y4m(path, frames, fps: float = 15.0) -> int:
    """Write BGR frames as YUV4MPEG2 (C420jpeg), the format Chromium's
    --use-file-for-fake-video-capture reads.  Returns the number of frames."""
    import cv2
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with open(path, "wb") as fh:
        for frame in frames:
            h, w = frame.shape[:2]
            if count == 0:
                if w % 2 or h % 2:
                    raise ValueError("frame width and height must be even")
                fh.write(f"YUV4MPEG2 W{w} H{h} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n".encode())
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            count += 1
    return count
