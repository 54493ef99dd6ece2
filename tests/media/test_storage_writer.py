"""Recording storage and the Matroska writer/recorder, without peers."""

from __future__ import annotations

import hashlib
import time

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from recordings.storage import LocalDirStorage, StorageError
from recordings.writer import MatroskaPacketWriter, StreamSpec, container_for, probe
from vbranch.clock import FakeClock
from vbranch.media.codecs import is_keyframe, opus_duration_ms, vp8_dimensions
from vbranch.media.forwarding import EncodedFrame
from vbranch.media.negotiation import prefer_codecs
from vbranch.media.recorder import PartyRecorder

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)


@pytest.mark.parametrize("key", ["", "../x", "/abs", "a//b", "a/../b", ".hidden", "a b", "x" * 600])
def test_storage_rejects_unsafe_keys(storage, key):
    with pytest.raises(StorageError):
        storage.open_write(key)


def test_local_storage_round_trip_and_ranges(tmp_path):
    storage = LocalDirStorage(tmp_path / "rec")
    data = bytes(range(256)) * 100
    with storage.open_write("s1/customer.webm") as fh:
        fh.write(data)
    stored = storage.finalize("s1/customer.webm")
    assert stored.size_bytes == len(data) == storage.size("s1/customer.webm")
    assert stored.sha256 == hashlib.sha256(data).hexdigest() == storage.sha256("s1/customer.webm")
    assert storage.read_range("s1/customer.webm", 10, 19) == data[10:20]
    assert storage.read_range("s1/customer.webm", 25590) == data[25590:]
    assert storage.resolve_range("s1/customer.webm", None, 100) == (len(data) - 100, len(data) - 1)
    assert storage.resolve_range("s1/customer.webm", 0, 10**9) == (0, len(data) - 1)
    with pytest.raises(StorageError):
        storage.resolve_range("s1/customer.webm", len(data), None)
    storage.delete("s1/customer.webm")
    assert not storage.exists("s1/customer.webm")
    with pytest.raises(StorageError):
        storage.size("s1/customer.webm")


def test_codec_peeks(clip):
    data, key = clip.video[0]
    assert key and is_keyframe("vp8", data) and vp8_dimensions(data) == (clip.width, clip.height)
    assert not is_keyframe("vp8", clip.video[1][0]) and vp8_dimensions(clip.video[1][0]) is None
    assert opus_duration_ms(clip.audio[0]) == 20
    assert container_for(["vp8", "opus"]) == "webm" and container_for(["h264", "opus"]) == "matroska"


def test_prefer_codecs_keeps_rtx_after_its_codec():
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    rtx_vp8 = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=98, parameters={"apt": 97})
    rtx_h264 = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=103, parameters={"apt": 102})
    ordered = prefer_codecs([VP8, rtx_vp8, h264, rtx_h264], ["h264", "vp8"])
    assert [c.payloadType for c in ordered] == [102, 103, 97, 98]


def test_writer_makes_timestamps_increasing_and_refuses_unknown_codecs(tmp_path, clip):
    with pytest.raises(ValueError):
        MatroskaPacketWriter(open(tmp_path / "x.mkv", "w+b"), [StreamSpec("video", "mpeg2video")])
    fh = open(tmp_path / "w.webm", "w+b", buffering=0)
    writer = MatroskaPacketWriter(fh, [StreamSpec("video", "vp8", clip.width, clip.height), StreamSpec("audio", "opus")])
    assert writer.write("video", clip.video[0][0], 0, keyframe=True) == 0
    assert writer.write("video", clip.video[1][0], 0, keyframe=False) == 1  # bumped
    writer.write("audio", clip.audio[0], 0, duration_ms=20)
    writer.write("audio", clip.audio[1], 20, duration_ms=20)
    assert writer.sync()
    writer.close()
    assert fh.closed
    info = probe(tmp_path / "w.webm")
    assert (info.video_frames, info.audio_frames) == (2, 2)
    assert (info.width, info.height) == (clip.width, clip.height)


def frame(kind, data, ts, key, arrival, generation=1):
    codec = VP8 if kind == "video" else OPUS
    return EncodedFrame(kind, codec, "vp8" if kind == "video" else "opus", data, ts, key, arrival, generation)


async def test_recorder_starts_on_a_keyframe_and_anchors_each_stream(storage, clip):
    clock = FakeClock()
    asked = []
    recorder = PartyRecorder(
        session_id="r1",
        party="agent",
        storage=storage,
        clock=clock,
        expected_kinds={"audio", "video"},
        request_keyframe=asked.append,
    )
    t0 = time.monotonic()
    # P-frames before any key frame are dropped (and a key frame asked for)
    recorder.push(frame("video", clip.video[5][0], 5 * 6000, False, t0))
    assert asked == ["recorder_start"] and recorder.writer is None
    recorder.push(frame("audio", clip.audio[0], 0, True, t0 + 0.1))  # buffered: no video size yet
    assert recorder.writer is None
    recorder.push(frame("video", clip.video[0][0], 0, True, t0 + 0.2))
    assert recorder.writer is not None and recorder.storage_key == "r1/agent.webm"
    for i in range(1, 30):  # 2 s of video, audio
        recorder.push(frame("video", clip.video[i][0], i * 6000, False, t0 + 0.2 + i / 15))
    for j in range(1, 100):
        recorder.push(frame("audio", clip.audio[j % len(clip.audio)], j * 960, True, t0 + 0.1 + j * 0.02))
    # a reconnect: new generation, RTP timestamps start again at 0
    recorder.push(frame("video", clip.video[0][0], 0, True, t0 + 3.0, generation=2))
    result = await recorder.close()
    assert result.started_at == pytest.approx(clock.now(), abs=1.0)
    info = probe(storage.local_path(result.storage_key))
    assert info.video_frames == result.video_frames == 31
    assert info.first_s["audio"] == 0.0
    assert info.first_s["video"] == pytest.approx(0.1, abs=0.01)  # arrived 100 ms after the audio
    assert info.last_s["video"] == pytest.approx(2.9, abs=0.01)  # re-anchored on arrival
    assert result.duration_s == pytest.approx(3.0, abs=0.1)


async def test_recorder_without_video_starts_after_the_wait(storage, clip):
    recorder = PartyRecorder(
        session_id="r2",
        party="customer",
        storage=storage,
        clock=FakeClock(),
        expected_kinds={"audio", "video"},
        header_wait_s=0.0,
    )
    t0 = time.monotonic()
    for j in range(50):
        recorder.push(frame("audio", clip.audio[j], j * 960, True, t0 + j * 0.02))
    result = await recorder.close()
    assert (result.video_codec, result.audio_codec, result.audio_frames) == (None, "opus", 50)
    assert probe(storage.local_path(result.storage_key)).audio_frames == 50


def test_storage_never_overwrites_and_recorder_picks_a_new_key(storage, clip):
    from recordings.storage import KeyExistsError
    from vbranch.media.recorder import open_new_recording

    with storage.open_write("s9/agent.webm") as fh:
        fh.write(b"crashed")
    with pytest.raises(KeyExistsError):
        storage.open_write("s9/agent.webm")
    key, fh = open_new_recording(storage, "s9/agent", "webm")
    fh.close()
    assert key == "s9/agent-2.webm"
    assert storage.read_range("s9/agent.webm") == b"crashed"
