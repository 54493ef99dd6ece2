"""Real aiortc client peers talking to a MediaHub in-process."""

from __future__ import annotations

import asyncio
import time

import av
import pytest

from recordings.writer import probe
from vbranch.media.hub import MediaError, MediaHub

from .helpers import (
    ClientPeer,
    PatternVideoTrack,
    PreEncodedVideoTrack,
    client_for,
    decode_frames,
    start_call,
)

pytestmark = pytest.mark.media


def decode_all(path) -> tuple[int, int, tuple[int, int] | None]:
    """Decode every frame of a recording with PyAV: (video frames, audio frames, size)."""
    video = audio = 0
    size = None
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
                size = (frame.width, frame.height)
            else:
                audio += 1
    return video, audio, size


async def test_call_forwards_both_ways_and_records_both_parties(hub, storage, clip, events):
    customer = client_for(clip, keep_frames=True)
    agent = client_for(clip, keep_frames=True)
    t_customer = time.time()
    await customer.connect_to_hub(hub, "s1", "customer")
    await asyncio.sleep(0.5)  # the customer is alone for a moment: nothing to receive yet
    assert customer.received["video"].frames == 0
    t_agent = time.time()
    await agent.connect_to_hub(hub, "s1", "agent")
    await asyncio.gather(customer.wait_frames("video", 20), agent.wait_frames("video", 20))
    await asyncio.gather(customer.wait_frames("audio", 50), agent.wait_frames("audio", 50))
    await asyncio.sleep(1.0)

    # forwarded as is: what arrives decodes, at the clip's size, with no transcoding
    for peer in (customer, agent):
        assert peer.received["video"].codec == "vp8"
        assert peer.received["audio"].codec == "opus"
        frames = decode_frames(peer.received["video"].kept)
        assert len(frames) >= 20
        assert (frames[-1].width, frames[-1].height) == (clip.width, clip.height)
    stats = hub.stats("s1")
    for party in ("customer", "agent"):
        assert {k: v["mode"] for k, v in stats[party]["forwarded"].items()} == {
            "audio": "passthrough",
            "video": "passthrough",
        }
    assert not events.of("media.transcoding_fallback")
    assert len(events.of("media.party_connected")) == 2

    t_end = time.time()
    results = await hub.end_session("s1")
    await asyncio.gather(customer.close(), agent.close())

    by_party = {r.party: r for r in results}
    assert set(by_party) == {"customer", "agent"}
    for party, t_start in (("customer", t_customer), ("agent", t_agent)):
        r = by_party[party]
        assert r.container == "webm" and r.storage_key.endswith(f"{party}.webm")
        assert (r.video_codec, r.audio_codec) == ("vp8", "opus")
        # the call for this party: from its offer to the end of the session
        assert r.started_at == pytest.approx(t_start, abs=1.0)
        assert r.duration_s == pytest.approx(t_end - t_start, abs=1.0)
        path = storage.local_path(r.storage_key)
        assert r.size_bytes == path.stat().st_size == storage.size(r.storage_key)
        assert r.sha256 == storage.sha256(r.storage_key)
        info = probe(path)
        assert info.header_duration_s == pytest.approx(r.duration_s, abs=0.2)
        assert info.video_frames == r.video_frames and info.audio_frames == r.audio_frames
        video, audio, size = decode_all(path)
        assert video == r.video_frames > 0 and audio > 0
        assert size == (clip.width, clip.height)
    assert [e["party"] for e in events.of("media.recording_finalised")] == ["customer", "agent"]


async def test_keyframe_request_reaches_the_other_party(hub, events):
    # the customer encodes live with aiortc (key frames only at start and on request)
    customer = ClientPeer(video=PatternVideoTrack(320, 240, 15), audio=None)
    agent = ClientPeer(video=None, audio=None)
    call = await start_call(hub, "kf", None, customer=customer, agent=agent, wait_frames=0)
    await agent.wait_frames("video", 15)
    await asyncio.sleep(0.6)  # past the hub's PLI rate limit after the start-up request
    before = agent.received["video"].keyframes
    sent_at = time.monotonic()
    assert await agent.send_pli()
    deadline = time.monotonic() + 3.0
    while agent.received["video"].keyframes == before and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert agent.received["video"].keyframes > before, "no key frame after the PLI"
    assert agent.received["video"].keyframe_times[-1] - sent_at < 1.0
    assert events.of("media.keyframe_requested", party="customer", by="agent", reason="pli")
    await call.close()


async def test_pre_encoded_sender_answers_pli_with_keyframe(hub, clip, events):
    call = await start_call(hub, "kf2", clip)
    await asyncio.sleep(0.6)
    requests = call.customer.video_track.keyframe_requests
    before = call.agent.received["video"].keyframes
    assert await call.agent.send_pli()
    await asyncio.sleep(0.8)
    assert call.customer.video_track.keyframe_requests == requests + 1
    assert call.agent.received["video"].keyframes == before + 1
    await call.close()


async def test_agent_first_then_customer_and_customer_reconnects(hub, storage, clip, events):
    agent = client_for(clip)
    await agent.connect_to_hub(hub, "s2", "agent")
    await agent.wait_connected()
    first = client_for(clip)
    await first.connect_to_hub(hub, "s2", "customer")
    await agent.wait_frames("video", 10)
    await first.wait_frames("video", 10)

    # the customer's network drops; they come back with a new peer connection
    await first.close()
    await hub.close_party("s2", "customer")
    assert events.of("media.party_disconnected", party="customer", reason="closed")
    await asyncio.sleep(0.3)
    seen = agent.received["video"].frames
    second = client_for(clip)
    await second.connect_to_hub(hub, "s2", "customer")
    await second.wait_frames("video", 10)
    await agent.wait_frames("video", seen + 10)
    assert hub.stats("s2")["agent"]["forwarded"]["video"]["mode"] == "passthrough"

    results = {r.party: r for r in await hub.end_session("s2")}
    await asyncio.gather(agent.close(), second.close())
    customer = results["customer"]
    # one file across both connections, decodable, timestamps increasing
    info = probe(storage.local_path(customer.storage_key))
    assert info.video_frames == customer.video_frames >= 20
    assert info.video_keyframes >= 2
    video, _, _ = decode_all(storage.local_path(customer.storage_key))
    assert video == customer.video_frames


async def test_tap_decodes_only_while_iterated(hub, clip):
    call = await start_call(hub, "tap", clip)
    tap = hub.tap_video("tap", "customer", format="bgr24")
    assert not tap.active
    await asyncio.sleep(0.3)
    assert tap.frames_decoded == 0
    images = []
    async with tap:
        async for image in tap:
            images.append(image)
            if len(images) == 3:
                break
        assert tap.active
    assert not tap.active
    assert images[-1].shape == (clip.height, clip.width, 3)
    decoded = tap.frames_decoded
    await asyncio.sleep(0.3)
    assert tap.frames_decoded == decoded
    # a tap still iterated when the session ends just stops
    tap2 = hub.tap_video("tap", "agent")
    frame = await tap2.__anext__()
    assert frame.width == clip.width
    await hub.end_session("tap")
    with pytest.raises(StopAsyncIteration):
        await tap2.__anext__()
    await call.close()


async def test_transcoding_fallback_when_no_common_codec(hub, storage, events):
    from vbranch.media.synthetic import encode_h264_clip

    h264 = encode_h264_clip(320, 240, 15, 3.0)
    customer = ClientPeer(
        video=PreEncodedVideoTrack(h264, 15),
        audio=None,
        video_codecs=["H264"],
        keep_frames=True,
    )
    agent = ClientPeer(video=PatternVideoTrack(320, 240, 15), audio=None, video_codecs=["VP8"], keep_frames=True)
    call = await start_call(hub, "tc", None, customer=customer, agent=agent, wait_frames=10)
    assert customer.sender_codec("video") == "h264" and agent.sender_codec("video") == "vp8"
    assert customer.received["video"].codec == "h264" and agent.received["video"].codec == "vp8"
    assert len(decode_frames(agent.received["video"].kept)) >= 5
    assert len(decode_frames(customer.received["video"].kept)) >= 5
    fallbacks = {(e["from"], e["source_codec"], e["sink_codec"]) for e in events.of("media.transcoding_fallback")}
    assert fallbacks == {("customer", "h264", "vp8"), ("agent", "vp8", "h264")}
    results = {r.party: r for r in await hub.end_session("tc")}
    await call.close()
    # recordings keep each party's own codec
    assert (results["customer"].container, results["customer"].video_codec) == ("matroska", "h264")
    assert (results["agent"].container, results["agent"].video_codec) == ("webm", "vp8")
    for r in results.values():
        video, _, size = decode_all(storage.local_path(r.storage_key))
        assert video >= 5 and size == (320, 240)


async def test_ice_and_errors(hub, clip):
    with pytest.raises(MediaError):
        await hub.handle_offer("x", "robber", "v=0")
    with pytest.raises(MediaError):
        await hub.handle_offer("x", "customer", "not sdp")
    with pytest.raises(MediaError):
        hub.tap_video("nope", "customer")
    # candidates may come before the offer; they are kept and applied
    await hub.add_ice("s3", "customer", {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
    call = await start_call(hub, "s3", clip)
    await hub.add_ice("s3", "customer", None)  # end of candidates
    with pytest.raises(MediaError):
        await hub.add_ice("s3", "customer", {"candidate": "candidate:garbage", "sdpMid": "0"})
    await hub.end_session("s3")
    with pytest.raises(MediaError):
        hub.tap_video("s3", "customer")
    await call.close()


async def test_stock_mode_relays_and_records(storage, clip, events):
    hub = MediaHub(storage, ice_servers=[], mode="stock", on_event=events)
    try:
        call = await start_call(hub, "st", clip, wait_frames=10)
        await asyncio.sleep(1.0)
        tap = hub.tap_video("st", "customer")
        frame = await tap.__anext__()
        assert frame.width == clip.width
        await tap.aclose()
        results = {r.party: r for r in await hub.end_session("st")}
        await call.close()
    finally:
        await hub.close()
    assert set(results) == {"customer", "agent"}
    for r in results.values():
        assert r.video_frames > 5 and r.duration_s > 0.5
        video, audio, _ = decode_all(storage.local_path(r.storage_key))
        assert video > 5 and audio > 0
