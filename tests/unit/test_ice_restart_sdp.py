"""The pure half of ICE restart: what a restart offer asks, and the restarted description."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from vbranch.media.forwarding import missing_aiortc_hooks
from vbranch.media.ice_restart import HOOKS, RestartRefused, restart_request, restarted_sdp


@pytest.fixture(scope="module")
def offers() -> tuple[str, str]:
    """Two offers of real aiortc peer connections (each its own DTLS certificate)."""
    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        pc.addTransceiver("video")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    async def both() -> tuple[str, str]:
        return await make(), await make()

    return asyncio.run(both())


CANDIDATE = candidate_from_sdp("1 1 udp 2130706431 10.9.8.7 40000 typ host")


def test_a_restarted_description_has_new_credentials_candidates_and_version(offers):
    sdp = offers[0]
    out = restarted_sdp(sdp, "wxyz", "p" * 22, [CANDIDATE])
    before, after = SessionDescription.parse(sdp), SessionDescription.parse(out)
    assert int(after.origin.split()[2]) == int(before.origin.split()[2]) + 1
    for m_before, m_after in zip(before.media, after.media):
        assert (m_after.ice.usernameFragment, m_after.ice.password) == ("wxyz", "p" * 22)
        assert [(c.ip, c.port) for c in m_after.ice_candidates] == [("10.9.8.7", 40000)]
        assert m_after.ice_candidates_complete
        assert (m_after.host, m_after.port) == ("10.9.8.7", 40000)
        # everything else as agreed: codecs, mid, DTLS
        assert m_after.rtp.muxId == m_before.rtp.muxId
        assert [c.name for c in m_after.rtp.codecs] == [c.name for c in m_before.rtp.codecs]
        assert m_after.dtls.fingerprints == m_before.dtls.fingerprints


def test_a_restart_request_carries_the_new_parameters(offers):
    offer = restarted_sdp(offers[0], "wxyz", "p" * 22, [CANDIDATE])
    request = restart_request(offers[0], offer)
    assert (request.ufrag, request.pwd) == ("wxyz", "p" * 22)
    assert [(c.ip, c.port) for c in request.candidates] == [("10.9.8.7", 40000)]  # once, though in two sections
    assert request.end_of_candidates and not request.ice_lite


@pytest.mark.parametrize("change, why", [
    (lambda a, b: b, "another peer connection"),
    (lambda a, b: a, "did not change"),
    (lambda a, b: restarted_sdp(a, "wxyz", "p" * 22, []).replace("a=mid:1", "a=mid:9"), "media sections"),
    (lambda a, b: restarted_sdp(a, "wxyz", "p" * 22, []).replace("a=ice-ufrag:wxyz", "a=ice-ufrag:abcd", 1),
     "more than one ICE transport"),
])
def test_what_is_not_a_restart_of_the_connection_is_refused(offers, change, why):
    with pytest.raises(RestartRefused, match=why):
        restart_request(offers[0], change(*offers))


def test_the_aiortc_internals_used_are_there():
    assert HOOKS and missing_aiortc_hooks() == []  # the start-up check covers the ICE restart's too
