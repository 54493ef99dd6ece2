"""Unit tests of vbranch.media.negotiation: the codec each leg of a call uses (pure).

Most tests build ``RTCRtpCodecParameters`` by hand; one runs aiortc's own SDP
negotiation (offer limited to H.264 constrained baseline, no network: the
offer is not applied locally, so nothing gathers candidates).
"""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vbranch.media.codecs import codec_key
from vbranch.media.negotiation import choose, h264_profile, offered, prefer_codecs, variant

# fixed examples (no random seed, no example database), no per-example deadline
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)

CB = "42e01f"  # constrained baseline, level 3.1
BASELINE = "42001f"


def h264(pt: int, plid: str | None = CB, mode: str = "1") -> RTCRtpCodecParameters:
    params = {"packetization-mode": mode}
    if plid is not None:
        params["profile-level-id"] = plid
    return RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=pt, parameters=params)


def vp8(pt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=pt)


def vp9(pt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="video/VP9", clockRate=90000, payloadType=pt)


def rtx(pt: int, apt: int) -> RTCRtpCodecParameters:
    # apt is an int, as aiortc's SDP parser stores it
    return RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt, parameters={"apt": apt})


def opus(pt: int = 111) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=pt)


def pts(codecs: list[RTCRtpCodecParameters]) -> list[int]:
    return [c.payloadType for c in codecs]


# -- h264_profile, variant, offered ------------------------------------------

def test_h264_profile_is_profile_and_constraints_not_level():
    assert h264_profile(h264(96, "42e01f")) == "42e0"
    assert h264_profile(h264(96, "42e034")) == "42e0"  # another level, same variant
    assert h264_profile(h264(96, "42E01F")) == "42e0"  # hex is case-insensitive
    assert h264_profile(h264(96, "42001f")) == "4200"


def test_h264_profile_defaults_to_constrained_baseline_like_aiortc():
    # aiortc (and libwebrtc) read a missing profile-level-id as 42e01f
    assert h264_profile(h264(96, None)) == "42e0"


def test_variant():
    assert variant(h264(96, CB)) == "h264/42e0"
    assert variant(h264(96, BASELINE)) == "h264/4200"
    assert variant(vp8(97)) == "vp8"
    assert variant(opus()) == "opus"
    assert variant(rtx(98, 97)) == "rtx"


def test_offered_keeps_order_drops_rtx_and_duplicates():
    codecs = [h264(102, BASELINE), rtx(103, 102), vp8(96), rtx(97, 96), h264(104, CB), rtx(105, 104)]
    assert offered(codecs) == ["h264", "vp8"]
    assert offered([]) == []
    assert offered([rtx(97, 96)]) == []
    assert offered([opus()]) == ["opus"]


# -- choose --------------------------------------------------------------------

def test_choose_first_preferred_codec_both_offer():
    assert choose(["vp8", "h264"], ["h264", "vp8"], ["vp8", "h264"], None) == "vp8"
    assert choose(["vp8", "h264"], ["h264", "vp8"], ["h264"], None) == "h264"
    assert choose(["h264", "vp8"], ["vp8", "h264"], ["vp8", "h264"], None) == "h264"


def test_choose_call_codec_wins_when_offered():
    # the preference (and the peer) would say vp8, but the call already uses h264
    assert choose(["vp8", "h264"], ["vp8", "h264"], ["vp8", "h264"], "h264") == "h264"
    assert choose(["vp8", "h264"], ["vp8", "h264"], None, "h264") == "h264"


def test_choose_call_codec_ignored_when_not_offered():
    assert choose(["vp8", "h264"], ["vp8"], ["vp8", "h264"], "h264") == "vp8"
    assert choose(["vp8", "h264"], ["vp8"], None, "h264") == "vp8"


def test_choose_falls_back_to_own_best_when_nothing_common():
    assert choose(["vp8", "h264"], ["h264", "vp8"], ["vp9"], None) == "vp8"
    assert choose(["vp8", "h264"], ["h264"], ["vp8"], None) == "h264"
    # the peer offered nothing at all
    assert choose(["vp8", "h264"], ["h264", "vp8"], [], None) == "vp8"


def test_choose_without_peer_offer_is_own_best_by_preference():
    assert choose(["vp8", "h264"], ["h264", "vp8"], None, None) == "vp8"
    assert choose(["h264", "vp8"], ["vp8", "h264"], None, None) == "h264"


def test_choose_codecs_outside_the_preference_come_last_in_own_order():
    assert choose(["vp8"], ["av1", "vp9"], None, None) == "av1"
    assert choose(["vp8"], ["av1", "vp9", "vp8"], None, None) == "vp8"
    assert choose(["vp8"], ["av1", "vp9"], ["vp9"], None) == "vp9"  # common, though not preferred


def test_choose_none_when_nothing_offered():
    assert choose(["vp8", "h264"], [], ["vp8"], None) is None
    assert choose(["vp8", "h264"], [], None, None) is None
    assert choose(["vp8", "h264"], [], ["vp8"], "vp8") is None


KEYS = ["vp8", "h264", "vp9", "av1", "opus"]
key_lists = st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS))


@PROPERTY
@given(preference=key_lists, a=key_lists, b=key_lists)
def test_choose_is_symmetric_when_a_preferred_codec_is_common(preference, a, b):
    common = [c for c in preference if c in a and c in b]
    assume(common)
    assert choose(preference, a, b, None) == choose(preference, b, a, None) == common[0]


@PROPERTY
@given(preference=key_lists, mine=key_lists, peer=st.none() | key_lists,
       call=st.none() | st.sampled_from(KEYS))
def test_choose_result_is_always_offered_by_this_party(preference, mine, peer, call):
    got = choose(preference, mine, peer, call)
    if not mine:
        assert got is None
    else:
        assert got in mine
        if call in mine:
            assert got == call


# -- prefer_codecs ---------------------------------------------------------------

def test_prefer_codecs_first_match_of_order_comes_first_with_its_rtx():
    codecs = [vp8(96), rtx(97, 96), h264(102, CB), rtx(103, 102)]
    assert pts(prefer_codecs(codecs, ["h264", "vp8"])) == [102, 103, 96, 97]
    assert pts(prefer_codecs(codecs, ["vp8", "h264"])) == [96, 97, 102, 103]


def test_prefer_codecs_rtx_follows_its_codec_even_when_listed_apart():
    codecs = [rtx(97, 96), rtx(103, 102), h264(102, CB), vp8(96)]
    assert pts(prefer_codecs(codecs, ["vp8", "h264"])) == [96, 97, 102, 103]
    assert pts(prefer_codecs(codecs, ["h264"])) == [102, 103, 96, 97]


def test_prefer_codecs_ranks_by_first_mention():
    # regression: the old version kept the last index, so this put VP8 first
    codecs = [vp8(96), rtx(97, 96), h264(102, CB), rtx(103, 102)]
    assert pts(prefer_codecs(codecs, ["h264", "vp8", "h264"])) == [102, 103, 96, 97]
    assert pts(prefer_codecs(codecs, ["vp8", "h264", "vp8"])) == [96, 97, 102, 103]


def test_prefer_codecs_order_is_case_insensitive():
    codecs = [vp8(96), h264(102, CB)]
    assert pts(prefer_codecs(codecs, ["H264", "VP8"])) == [102, 96]


def test_prefer_codecs_unlisted_codecs_keep_their_order_at_the_end():
    codecs = [vp9(98), vp8(96), h264(102, CB), rtx(99, 98)]
    assert pts(prefer_codecs(codecs, ["h264"])) == [102, 98, 99, 96]
    assert pts(prefer_codecs(codecs, ["av1"])) == [102, 98, 99, 96]  # (H.264 variants rank first among equals)
    assert pts(prefer_codecs([vp9(98), vp8(96), rtx(99, 98)], [])) == [98, 99, 96]


def test_prefer_codecs_duplicate_in_order_never_lets_an_unlisted_codec_first():
    # order ["vp9", "vp9", "vp8"]: vp8 is ranked 2, unlisted h264 also 2; the H.264 variant
    # tie-break then puts h264 before the listed vp8
    assert codec_key(prefer_codecs([vp8(96), h264(102, CB)], ["vp9", "vp9", "vp8"])[0]) == "vp8"
    # same without H.264: the tie keeps input order, so unlisted vp9 stays before listed vp8
    assert codec_key(prefer_codecs([vp9(98), vp8(96)], ["h264", "h264", "vp8"])[0]) == "vp8"


def test_prefer_codecs_constrained_baseline_before_baseline():
    codecs = [h264(100, BASELINE), rtx(101, 100), h264(102, CB), rtx(103, 102)]
    assert pts(prefer_codecs(codecs, ["h264"])) == [102, 103, 100, 101]
    assert pts(prefer_codecs(codecs, ["vp8", "h264"])) == [102, 103, 100, 101]


def test_prefer_codecs_peer_variant_comes_first():
    codecs = [h264(102, CB), rtx(103, 102), h264(100, BASELINE), rtx(101, 100)]
    assert pts(prefer_codecs(codecs, ["h264"], peer_variant="h264/4200")) == [100, 101, 102, 103]
    assert pts(prefer_codecs(codecs, ["h264"], peer_variant="h264/42e0")) == [102, 103, 100, 101]
    # a peer variant that is not H.264 leaves the default (constrained baseline first)
    assert pts(prefer_codecs(codecs, ["h264"], peer_variant="vp8")) == [102, 103, 100, 101]


def test_prefer_codecs_order_beats_peer_variant():
    codecs = [h264(100, BASELINE), vp8(96), h264(102, CB)]
    assert pts(prefer_codecs(codecs, ["vp8", "h264"], peer_variant="h264/4200")) == [96, 100, 102]


def test_prefer_codecs_other_h264_profiles_after_known_ones():
    high = h264(106, "640c1f")
    codecs = [high, h264(100, BASELINE), h264(102, CB)]
    assert pts(prefer_codecs(codecs, ["h264"])) == [102, 100, 106]


def test_prefer_codecs_does_not_mutate_its_input():
    codecs = [vp8(96), rtx(97, 96), h264(102, CB), rtx(103, 102)]
    before = pts(codecs)
    prefer_codecs(codecs, ["h264"])
    assert pts(codecs) == before


def test_prefer_codecs_empty():
    assert prefer_codecs([], ["vp8", "h264"]) == []


BASES = [("vp8", None), ("h264", CB), ("h264", BASELINE), ("vp9", None), ("h264", "640c1f")]


@st.composite
def codec_lists(draw):
    n = draw(st.integers(0, 6))
    base: list[RTCRtpCodecParameters] = []
    for i in range(n):
        name, plid = draw(st.sampled_from(BASES))
        pt = 96 + 2 * i
        base.append(h264(pt, plid) if name == "h264" else
                    vp8(pt) if name == "vp8" else vp9(pt))
    with_rtx = [c for c in base if draw(st.booleans())]
    codecs = base + [rtx(c.payloadType + 1, c.payloadType) for c in with_rtx]
    return draw(st.permutations(codecs))


@PROPERTY
@given(codecs=codec_lists(),
       order=st.lists(st.sampled_from(["vp8", "h264", "vp9", "av1"]), max_size=5, unique=True),
       peer_variant=st.none() | st.sampled_from(["h264/42e0", "h264/4200", "vp8", "h264/640c"]))
def test_prefer_codecs_properties(codecs, order, peer_variant):
    out = prefer_codecs(codecs, order, peer_variant)
    base = [c for c in out if codec_key(c) != "rtx"]
    # a permutation of the input (every RTX here has its codec)
    assert sorted(pts(out)) == sorted(pts(codecs))
    # each RTX right after its codec
    for i, c in enumerate(out):
        if codec_key(c) == "rtx":
            assert out[i - 1].payloadType == c.parameters["apt"]
    # ranked by order, unlisted last 
    first = {}
    for i, k in enumerate(order):
        first.setdefault(k, i)
    ranks = [first.get(codec_key(c), len(order) + 1) for c in base]
    assert ranks == sorted(ranks)
    # among H.264 variants: the peer's, then constrained baseline, then baseline, then others
    variants = ([peer_variant] if peer_variant else []) + ["h264/42e0", "h264/4200"]
    h = [variants.index(variant(c)) if variant(c) in variants else len(variants)
         for c in base if codec_key(c) == "h264"]
    assert h == sorted(h)
    # the first codec is the one aiortc/browsers will send with
    if base and any(k in [codec_key(c) for c in base] for k in order):
        wanted = next(k for k in order if k in [codec_key(c) for c in base])
        assert codec_key(out[0]) == wanted


# -- with aiortc's own negotiation ---------------------------------------------

async def _answerer_codecs(offer_codecs: list) -> list[RTCRtpCodecParameters]:
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        transceiver = offerer.addTransceiver("video", direction="sendrecv")
        transceiver.setCodecPreferences(offer_codecs)
        offer = await offerer.createOffer()  # not applied: no ICE gathering, no sockets
        await answerer.setRemoteDescription(offer)
        (t,) = [t for t in answerer.getTransceivers() if t.kind == "video"]
        return list(t._codecs)
    finally:
        await offerer.close()
        await answerer.close()


def _caps(name: str, plid: str | None = None) -> list:
    return [c for c in RTCRtpSender.getCapabilities("video").codecs
            if codec_key(c) == name and (plid is None or c.parameters.get("profile-level-id") == plid)]


async def test_aiortc_offer_limited_to_constrained_baseline():
    prefs = _caps("h264", CB) + _caps("rtx")
    assert len(prefs) == 2
    codecs = await _answerer_codecs(prefs)
    assert offered(codecs) == ["h264"]
    assert [variant(c) for c in codecs] == ["h264/42e0", "rtx"]
    # the hub's default order prefers VP8, which this party cannot do: H.264 it is, with its RTX
    ordered = prefer_codecs(codecs, [choose(["vp8", "h264"], offered(codecs), ["vp8", "h264"], None)])
    assert [variant(c) for c in ordered] == ["h264/42e0", "rtx"]
    assert ordered[1].parameters["apt"] == ordered[0].payloadType


async def test_aiortc_offer_baseline_first_is_reordered_to_constrained_baseline():
    prefs = _caps("h264", BASELINE) + _caps("h264", CB) + _caps("vp8") + _caps("rtx")
    codecs = await _answerer_codecs(prefs)
    assert offered(codecs) == ["h264", "vp8"]
    assert [variant(c) for c in codecs if codec_key(c) != "rtx"] == ["h264/4200", "h264/42e0", "vp8"]
    ordered = prefer_codecs(codecs, ["h264"])
    assert [variant(c) for c in ordered] == ["h264/42e0", "rtx", "h264/4200", "rtx", "vp8", "rtx"]
    for i in (1, 3, 5):
        assert ordered[i].parameters["apt"] == ordered[i - 1].payloadType
    # with a baseline peer, baseline goes first
    ordered = prefer_codecs(codecs, ["h264"], peer_variant="h264/4200")
    assert variant(ordered[0]) == "h264/4200"
