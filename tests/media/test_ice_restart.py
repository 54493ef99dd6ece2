"""ICE restart through the hub: a party's path is lost and comes back on new candidates, on the
same peer connection (same DTLS session, same recording file), with a key frame first."""

from __future__ import annotations

import asyncio
import time

import av
import pytest

from vbranch.media.hub import MediaError, RestartUnavailable
from vbranch.media.ice_restart import restarted_sdp

from .helpers import client_for, start_call

pytestmark = pytest.mark.media


def video_packets(path) -> list[tuple[float, bool]]:
    """(seconds, keyframe) of every video packet of a recording, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(p.pts * stream.time_base), p.is_keyframe)
                for p in container.demux(stream) if p.pts is not None and p.size]


async def test_a_lost_path_comes_back_by_ice_restart_on_the_same_connection(hub, storage, clip, events):
    call = await start_call(hub, "s1", clip, wait_frames=10)
    customer, agent = call.customer, call.agent
    hub_pc = hub._sessions["s1"].parties["customer"].pc
    await asyncio.sleep(1.0)

    customer.lose_path()  # nothing goes either way now
    lost_at = time.monotonic()
    await events.wait_for("media.party_stalled", timeout=10, party="customer")
    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - lost_at)))
    seen_agent, seen_customer = agent.received["video"].frames, customer.received["video"].frames
    back_from = time.monotonic()
    await customer.restart_ice(lambda sdp: hub.handle_offer("s1", "customer", sdp, ice_restart=True))
    await agent.wait_frames("video", seen_agent + 10, 15)
    await customer.wait_frames("video", seen_customer + 10, 15)
    media_back = time.monotonic() - back_from

    restarted = await events.wait_for("media.ice_restarted", party="customer")
    assert restarted["after_s"] < 5
    await events.wait_for("media.party_resumed", party="customer")
    assert hub._sessions["s1"].parties["customer"].pc is hub_pc  # the same connection
    assert customer.pc.connectionState == "connected"
    assert not events.of("media.party_disconnected", party="customer")
    # both ways, the first frame after the reconnect is asked for at once
    assert events.of("media.keyframe_requested", party="customer", reason="ice_restart")
    assert events.of("media.keyframe_requested", party="agent", reason="ice_restart")

    await asyncio.sleep(1.0)
    results = {r.party: r for r in await hub.end_session("s1")}
    await call.close()
    rec = results["customer"]
    packets = video_packets(storage.local_path(rec.storage_key))
    gaps = [(i, packets[i][0] - packets[i - 1][0]) for i in range(1, len(packets))
            if packets[i][0] - packets[i - 1][0] > 3.0]
    assert len(gaps) == 1, gaps  # one file; the lost 5 s are a gap in it
    after = gaps[0][0]
    assert packets[after][1], "the first frame recorded after the reconnect is a key frame"
    assert gaps[0][1] >= 4.5
    with av.open(str(storage.local_path(rec.storage_key))) as container:  # decodes through the gap
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == rec.video_frames
    print(f"media back {media_back:.2f} s after the restart offer; recorded gap {gaps[0][1]:.1f} s")


async def test_a_restart_while_the_old_path_still_works_switches_without_a_gap(hub, clip, events):
    call = await start_call(hub, "s2", clip, wait_frames=10)
    seen = call.agent.received["video"].frames
    await call.customer.restart_ice(lambda sdp: hub.handle_offer("s2", "customer", sdp, ice_restart=True))
    await call.agent.wait_frames("video", seen + 15, 10)
    assert events.of("media.ice_restarted", party="customer")
    assert not events.of("media.party_stalled", party="customer")
    # and again: a second restart of the same connection
    await call.customer.restart_ice(lambda sdp: hub.handle_offer("s2", "customer", sdp, ice_restart=True))
    await call.agent.wait_frames("video", seen + 30, 10)
    assert len(events.of("media.ice_restarted", party="customer")) == 2
    await call.close()


async def test_a_restart_offer_the_hub_cannot_apply_is_refused_with_a_typed_error(hub, clip):
    # no connection yet: the client must make a new one
    lone = client_for(clip)
    await lone.pc.setLocalDescription(await lone.pc.createOffer())
    with pytest.raises(RestartUnavailable, match="no live connection"):
        await hub.handle_offer("s3", "customer", lone.pc.localDescription.sdp, ice_restart=True)

    call = await start_call(hub, "s3", clip, wait_frames=5)
    # an offer from another peer connection (another DTLS certificate)
    with pytest.raises(RestartUnavailable, match="another peer connection"):
        await hub.handle_offer("s3", "customer", lone.pc.localDescription.sdp, ice_restart=True)
    # the same credentials: a renegotiation, not a restart
    with pytest.raises(RestartUnavailable, match="did not change"):
        await hub.handle_offer("s3", "customer", call.customer.pc.localDescription.sdp, ice_restart=True)
    # not SDP
    with pytest.raises(MediaError):
        await hub.handle_offer("s3", "customer", "v=0\r\nm=garbage", ice_restart=True)
    # a restart offer naming other media sections
    other = restarted_sdp(call.customer.pc.localDescription.sdp, "abcd", "a" * 22, []).replace("a=mid:1", "a=mid:7")
    with pytest.raises(RestartUnavailable, match="media sections"):
        await hub.handle_offer("s3", "customer", other, ice_restart=True)
    # nothing of this disturbed the call
    seen = call.agent.received["video"].frames
    await call.agent.wait_frames("video", seen + 10, 10)
    await call.close()
    await lone.close()
