"""Media health as evidence, with real aiortc peers: stalls and reconnects become timeline facts and gaps.

A customer whose media stops (the camera and microphone stop sending while the
connection stays up) is ``stalled`` and then ``resumed``; a customer whose
connection is lost and comes back later leaves a hole in its coverage. Both
are judged by vbranch.domain.media_coverage exactly as at the end of a call.
"""

from __future__ import annotations

import asyncio

import pytest

from vbranch.domain.media_coverage import CoverageRules, PartyMedia, RecordingSpan, coverage_issues
from vbranch.media.hub import MediaHub
from vbranch.media.synthetic import PreEncodedAudioTrack, PreEncodedVideoTrack

from .helpers import ClientPeer, client_for, start_call

pytestmark = pytest.mark.media


class Pausable:
    """Wraps a paced track's recv so the test can stop the flow while the connection stays up."""

    def __init__(self, track) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        recv = track.recv

        async def paused_recv():
            await self.flowing.wait()
            return await recv()

        track.recv = paused_recv


@pytest.fixture
async def watched_hub(storage, events):
    hub = MediaHub(storage, ice_servers=[], on_event=events, stall_after_s=1.0, connect_timeout_s=2.0)
    yield hub
    await hub.close()


def judged(hub: MediaHub, session_id: str, start: float, end: float, rules: CoverageRules) -> list[dict]:
    stats = hub.stats(session_id)
    spans = {p: RecordingSpan(s["recording"]["started_at"], end - s["recording"]["started_at"])
             for p, s in stats.items() if s["recording"] and s["recording"]["started_at"]}
    parties = {p: PartyMedia(h["ever_connected"], h["intervals"], [spans[p]] if p in spans else [])
               for p, h in hub.health(session_id).items()}
    return coverage_issues(start, end, parties, rules)


async def test_a_stall_and_a_lost_connection_are_timeline_facts_and_gaps(watched_hub, clip, events):
    hub = watched_hub
    start = hub.clock.now()
    hub.open_session("h1", started_at=start)
    video = PreEncodedVideoTrack(clip.video, clip.fps)
    audio = PreEncodedAudioTrack(clip.audio)
    pauses = [Pausable(video), Pausable(audio)]
    customer = ClientPeer(video=video, audio=audio)
    call = await start_call(hub, "h1", clip, customer=customer)
    try:
        # the customer's media stops flowing, the connection stays up
        for p in pauses:
            p.flowing.clear()
        await events.wait_for("media.party_stalled", timeout=10)
        assert hub.health("h1")["customer"]["state"] == "stalled"
        await asyncio.sleep(1.0)
        for p in pauses:
            p.flowing.set()
        await events.wait_for("media.party_resumed", timeout=10)
        stalled = events.of("media.party_stalled")[0]
        assert stalled["party"] == "customer" and stalled["silent_s"] >= 1.0 and stalled["offset_s"] > 0

        # the connection is lost; the customer comes back 2.5 s later on a new one
        await customer.close()
        await events.wait_for("media.party_disconnected", timeout=10)
        await asyncio.sleep(2.5)
        again = client_for(clip)
        await again.connect_to_hub(hub, "h1", "customer")
        await again.wait_frames("video", 10, 15)
        await call.agent.wait_frames("video", call.agent.received["video"].frames + 10, 15)
        end = hub.clock.now()
        health = hub.health("h1")["customer"]
        assert health["state"] == "connected" and len(health["intervals"]) == 3  # before, after the stall, back

        issues = judged(hub, "h1", start, end, CoverageRules(max_gap_s=2.0, start_grace_s=20, end_grace_s=5))
        assert [(i["party"], i["reason"]) for i in issues] == [("customer", "gap")] * 2, issues
        stall, lost = issues
        # the stall counts from the last frame that arrived to the first one after it
        assert stall["duration_s"] >= 1.0 + 1.0 and stall["start_offset_s"] < stall["end_offset_s"]
        assert lost["duration_s"] >= 2.5 and lost["start_offset_s"] >= stall["end_offset_s"]
        assert judged(hub, "h1", start, end, CoverageRules(max_gap_s=30.0)) == []
        await again.close()
    finally:
        await call.close()
        await hub.end_session("h1")


async def test_a_party_that_never_offers_is_flagged_as_it_happens(watched_hub, clip, events):
    hub = watched_hub
    hub.open_session("h2", started_at=hub.clock.now())
    agent = client_for(clip)
    await agent.connect_to_hub(hub, "h2", "agent")
    try:
        flagged = await events.wait_for("media.party_not_connected", timeout=10)
        assert flagged == {**flagged, "party": "customer", "reason": "no_offer"}
        assert flagged["after_s"] >= 2.0
        assert [e["party"] for e in events.of("media.party_not_connected")] == ["customer"]  # once
        health = hub.health("h2")
        assert health["customer"]["ever_connected"] is False and health["agent"]["ever_connected"] is True
    finally:
        await agent.close()
        await hub.end_session("h2")
