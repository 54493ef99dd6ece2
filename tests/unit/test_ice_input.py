"""Unit tests of vbranch.media.ice: ICE input from browsers (mDNS, end-of-candidates, trickle)."""

from __future__ import annotations

import pytest
from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription
from hypothesis import given, settings
from hypothesis import strategies as st

from vbranch.media.ice import (
    MAX_CANDIDATE_CHARS,
    CandidateError,
    TrickledCandidate,
    candidate_message,
    is_mdns,
    parse_candidate,
    sanitize_offer,
)

# fixed examples (no random seed, no example database), no per-example deadline
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)

MDNS_HOST = "9a2a6810-1111-2222-3333-444455556666.local"

MDNS_UDP = f"a=candidate:0 1 UDP 2122187007 {MDNS_HOST} 50919 typ host"
MDNS_TCP = f"a=candidate:1 1 TCP 2105458943 {MDNS_HOST} 9 typ host tcptype active"
REAL_UDP = "a=candidate:2 1 UDP 2122252543 192.0.2.10 50920 typ host"
REAL_TCP = "a=candidate:3 1 TCP 2105524479 192.0.2.10 9 typ host tcptype active"
SRFLX = "a=candidate:4 1 UDP 1685987071 198.51.100.7 61000 typ srflx raddr 0.0.0.0 rport 0"

FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)


def offer(*candidate_lines: str, end: bool = True) -> str:
    """A Firefox-style offer (one audio section), CRLF line ends."""
    lines = [
        "v=0",
        "o=mozilla...THIS_IS_SDPARTA-128.0 4189427349254545812 0 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        FINGERPRINT,
        "a=group:BUNDLE 0",
        "a=ice-options:trickle",
        "a=msid-semantic:WMS *",
        "m=audio 50919 UDP/TLS/RTP/SAVPF 109",
        "c=IN IP4 192.0.2.10",
        "a=sendrecv",
        *candidate_lines,
        *(["a=end-of-candidates"] if end else []),
        "a=ice-pwd:3c4a8c4e9a4b4f6f8c1d2e3f4a5b6c7d",
        "a=ice-ufrag:1a2b3c4d",
        "a=mid:0",
        "a=rtcp-mux",
        "a=rtpmap:109 opus/48000/2",
        "a=setup:actpass",
    ]
    return "\r\n".join(lines) + "\r\n"


# -- is_mdns ------------------------------------------------------------------

@pytest.mark.parametrize("host", [MDNS_HOST, MDNS_HOST.upper(), MDNS_HOST + ".", "abc.local"])
def test_is_mdns(host):
    assert is_mdns(host)


@pytest.mark.parametrize("host", ["192.0.2.10", "2001:db8::1", "local", ".local", "a.b.local",
                                  "host.example.com", "x.localhost", ""])
def test_is_not_mdns(host):
    assert not is_mdns(host)


# -- sanitize_offer -------------------------------------------------------------

def test_firefox_mdns_only_offer_loses_mdns_candidates_and_end_of_candidates():
    sdp = offer(MDNS_UDP, MDNS_TCP)
    result = sanitize_offer(sdp)
    assert "a=candidate:" not in result.sdp
    assert ".local" not in result.sdp
    assert "a=end-of-candidates" not in result.sdp
    assert result.usable == 0
    assert result.mdns_dropped == 2
    assert result.end_of_candidates is True
    assert result.end_held is True
    # nothing else changed
    expected = [line for line in sdp.split("\r\n")
                if line not in (MDNS_UDP, MDNS_TCP, "a=end-of-candidates")]
    assert result.sdp.split("\r\n") == expected


def test_mdns_only_offer_as_aiortc_reads_it():
    # what aiortc (and so aioice) would see: no candidates, and not told there are no more
    media = SessionDescription.parse(sanitize_offer(offer(MDNS_UDP, MDNS_TCP)).sdp).media[0]
    assert media.ice_candidates == []
    assert media.ice_candidates_complete is False
    before = SessionDescription.parse(offer(MDNS_UDP, MDNS_TCP)).media[0]
    assert before.ice_candidates_complete is True


def test_offer_with_real_candidates_keeps_them_and_end_of_candidates():
    sdp = offer(MDNS_UDP, REAL_UDP, SRFLX, MDNS_TCP)
    result = sanitize_offer(sdp)
    assert REAL_UDP in result.sdp.split("\r\n")
    assert SRFLX in result.sdp.split("\r\n")
    assert MDNS_UDP not in result.sdp and MDNS_TCP not in result.sdp
    assert "a=end-of-candidates" in result.sdp.split("\r\n")
    assert (result.usable, result.mdns_dropped, result.end_of_candidates, result.end_held) == (2, 2, True, False)
    media = SessionDescription.parse(result.sdp).media[0]
    assert [c.ip for c in media.ice_candidates] == ["192.0.2.10", "198.51.100.7"]
    assert media.ice_candidates_complete is True


def test_offer_with_only_tcp_real_candidates_holds_end_of_candidates():
    # TCP candidates are valid but aioice cannot use them: nothing usable yet
    result = sanitize_offer(offer(REAL_TCP, MDNS_UDP))
    assert REAL_TCP in result.sdp.split("\r\n")
    assert "a=end-of-candidates" not in result.sdp
    assert (result.usable, result.mdns_dropped, result.end_held) == (0, 1, True)


def test_offer_without_end_of_candidates():
    result = sanitize_offer(offer(MDNS_UDP, end=False))
    assert (result.usable, result.mdns_dropped, result.end_of_candidates, result.end_held) == (0, 1, False, False)
    result = sanitize_offer(offer(end=False))
    assert result.sdp == offer(end=False)
    assert (result.usable, result.mdns_dropped, result.end_of_candidates, result.end_held) == (0, 0, False, False)


def test_offer_with_only_real_candidates_is_unchanged():
    sdp = offer(REAL_UDP, SRFLX)
    result = sanitize_offer(sdp)
    assert result.sdp == sdp
    assert (result.usable, result.mdns_dropped, result.end_held) == (2, 0, False)


def test_crlf_preserved():
    sdp = offer(MDNS_UDP, REAL_UDP)
    out = sanitize_offer(sdp).sdp
    assert out.endswith("\r\n")
    assert "\n" not in out.replace("\r\n", "")
    assert out.count("\r\n") == sdp.count("\r\n") - 1  # one line dropped


def test_lf_only_offer_comes_out_with_crlf():
    sdp = offer(MDNS_UDP, REAL_UDP).replace("\r\n", "\n")
    out = sanitize_offer(sdp).sdp
    assert "\n" not in out.replace("\r\n", "")
    assert out == offer(REAL_UDP)


# -- parse_candidate --------------------------------------------------------------

HOST = "candidate:842163049 1 udp 1677729535 192.0.2.10 50920 typ host generation 0 ufrag EEtu network-cost 999"


@pytest.mark.parametrize("message", [None, {}, {"candidate": ""}, {"candidate": None},
                                     {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}])
def test_none_or_empty_ends_the_candidates(message):
    parsed = parse_candidate(message)
    assert parsed == TrickledCandidate(None)
    assert parsed.end and parsed.ice is None and parsed.ignored is None


def test_chrome_host_candidate():
    parsed = parse_candidate({"candidate": HOST, "sdpMid": "0", "sdpMLineIndex": 0})
    assert not parsed.end and parsed.ignored is None
    ice = parsed.ice
    assert isinstance(ice, RTCIceCandidate)
    assert (ice.foundation, ice.component, ice.protocol, ice.priority) == ("842163049", 1, "udp", 1677729535)
    assert (ice.ip, ice.port, ice.type) == ("192.0.2.10", 50920, "host")
    assert (ice.sdpMid, ice.sdpMLineIndex) == ("0", 0)


def test_srflx_candidate_with_related_address():
    parsed = parse_candidate({"candidate": SRFLX[2:], "sdpMid": "0"})
    ice = parsed.ice
    assert (ice.type, ice.relatedAddress, ice.relatedPort) == ("srflx", "0.0.0.0", 0)


@pytest.mark.parametrize("prefix", ["", "candidate:", "a=candidate:", "  a=candidate:"])
def test_prefixes_accepted(prefix):
    body = "1 1 UDP 2122252543 192.0.2.10 50920 typ host"
    parsed = parse_candidate({"candidate": prefix + body, "sdpMid": "0"})
    assert parsed.ice is not None
    assert (parsed.ice.foundation, parsed.ice.ip, parsed.ice.port) == ("1", "192.0.2.10", 50920)


def test_mdns_candidate_is_ignored():
    parsed = parse_candidate({"candidate": MDNS_UDP[2:], "sdpMid": "0", "sdpMLineIndex": 0})
    assert parsed == TrickledCandidate(None, ignored="mdns")
    assert not parsed.end


@pytest.mark.parametrize("line", [MDNS_TCP[2:], REAL_TCP[2:],
                                  "candidate:5 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active"])
def test_tcp_candidate_is_ignored(line):
    parsed = parse_candidate({"candidate": line, "sdpMid": "0"})
    assert parsed == TrickledCandidate(None, ignored="tcp")
    assert not parsed.end


@pytest.mark.parametrize("text", [
    "hello",
    "candidate:",
    "candidate:1 1 udp 2122252543 192.0.2.10 50920",  # too short
    "candidate:1 1 udp 2122252543 192.0.2.10 50920 host x",  # no typ
    "candidate:1 1 udp 2122252543 192.0.2.10 50920 type host",  # typ misspelt
    "candidate:1 1 udp 2122252543 192.0.2.10 port typ host",  # port not a number
    "candidate:1 1 udp 2122252543 192.0.2.10 0 typ host",  # port out of range
    "candidate:1 1 udp 2122252543 192.0.2.10 65536 typ host",
    "candidate:1 1 udp 2122252543 192.0.2.10 -1 typ host",
    "candidate:1 x udp 2122252543 192.0.2.10 50920 typ host",  # component not a number
    "candidate:1 3 udp 2122252543 192.0.2.10 50920 typ host",  # component out of range
    "candidate:1 0 udp 2122252543 192.0.2.10 50920 typ host",
    "candidate:1 1 udp high 192.0.2.10 50920 typ host",  # priority not a number
    "candidate:1 1 udp 1685987071 198.51.100.7 61000 typ srflx raddr 0.0.0.0 rport x",
    "a=end-of-candidates",
    "\x00" * 20,
])
def test_garbage_raises_candidate_error(text):
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": text, "sdpMid": "0"})


def test_too_long_raises_candidate_error():
    body = "candidate:1 1 udp 2122252543 192.0.2.10 50920 typ host"
    ok = body + " x" * ((MAX_CANDIDATE_CHARS - len(body)) // 2)
    assert len(ok) <= MAX_CANDIDATE_CHARS
    assert parse_candidate({"candidate": ok, "sdpMid": "0"}).ice is not None
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": body + " " * (MAX_CANDIDATE_CHARS + 1 - len(body)) + "x",
                         "sdpMid": "0"})
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": body + " x" * 1000, "sdpMid": "0"})


@pytest.mark.parametrize("value", [123, 1.5, True, ["candidate:1 1 udp 1 192.0.2.10 5 typ host"],
                                   {"candidate": "x"}, b"candidate:1 1 udp 1 192.0.2.10 5 typ host"])
def test_non_string_raises_candidate_error(value):
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": value, "sdpMid": "0"})


@pytest.mark.parametrize("value", [0, False, [], {}])
def test_falsy_non_string_raises_candidate_error(value):
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": value, "sdpMid": "0"})


@pytest.mark.parametrize("text", [
    "candidate:1 1 udp -5 192.0.2.10 50920 typ host",  # negative priority
    "candidate:1 1 udp 2122252543 192.0.2.10 5_000 typ host",
    "candidate:1 1 udp 2122252543 192.0.2.10 +5000 typ host",
    "candidate:1 1 udp 2122252543 192.0.2.10 \uff15\uff10\uff10\uff10 typ host",  # fullwidth 5000
])
def test_non_ice_number_syntax_raises_candidate_error(text):
    with pytest.raises(CandidateError):
        parse_candidate({"candidate": text, "sdpMid": "0"})


# sdpMid / sdpMLineIndex

@pytest.mark.parametrize(("mid", "index", "expected"), [
    ("0", 0, ("0", 0)),
    ("audio", None, ("audio", None)),
    (None, 1, (None, 1)),
    (None, None, (None, 0)),  # neither: the first m-line
    (0, None, (None, 0)),  # a non-string mid is dropped
    (None, True, (None, 0)),  # bool is not an int
    ("1", False, ("1", None)),
    (None, "1", (None, 0)),  # nor is a string
    (None, 1.0, (None, 0)),
    ("1", 2, ("1", 2)),
])
def test_sdp_mid_and_mline_index(mid, index, expected):
    message = {"candidate": HOST}
    if mid is not None:
        message["sdpMid"] = mid
    if index is not None:
        message["sdpMLineIndex"] = index
    ice = parse_candidate(message).ice
    assert (ice.sdpMid, ice.sdpMLineIndex) == expected


def test_parse_does_not_mutate_the_message():
    message = {"candidate": HOST, "sdpMid": "0", "sdpMLineIndex": True}
    parse_candidate(message)
    assert message == {"candidate": HOST, "sdpMid": "0", "sdpMLineIndex": True}


# -- candidate_message ------------------------------------------------------------

def test_candidate_message_none_is_end():
    assert candidate_message(None) is None
    assert parse_candidate(candidate_message(None)).end


def test_candidate_message_shape():
    ice = RTCIceCandidate(component=1, foundation="abc", ip="192.0.2.1", port=4000, priority=100,
                          protocol="udp", type="host", sdpMid="0", sdpMLineIndex=0)
    assert candidate_message(ice) == {"candidate": "candidate:abc 1 udp 100 192.0.2.1 4000 typ host",
                                      "sdpMid": "0", "sdpMLineIndex": 0}


@pytest.mark.parametrize("line", [
    HOST,
    SRFLX[2:],
    "candidate:7 2 UDP 41885439 203.0.113.5 3478 typ relay raddr 198.51.100.7 rport 61000",
    "candidate:8 1 udp 2122262783 2001:db8::1 50921 typ host",
])
@pytest.mark.parametrize(("mid", "index"), [("0", 0), ("1", None), (None, 2)])
def test_round_trip(line, mid, index):
    first = parse_candidate({"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}).ice
    assert first is not None
    message = candidate_message(first)
    assert message["candidate"].startswith("candidate:")
    again = parse_candidate(message)
    assert again.ice == first
    assert candidate_message(again.ice) == message


# -- fuzzing ---------------------------------------------------------------------

TOKENS = ["candidate:", "a=", "1", "2", "0", "9", "udp", "UDP", "tcp", "typ", "host", "srflx", "relay",
          "raddr", "rport", "tcptype", "active", "65535", "65536", "-1", "2122252543", "192.0.2.10",
          "::1", MDNS_HOST, "x", "\t", "\n", "\u3000", "\uff11", "1_0", "+1"]

candidate_texts = st.one_of(
    st.text(max_size=200),
    st.text(max_size=MAX_CANDIDATE_CHARS + 20, alphabet=st.characters(codec="ascii")),
    st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=14).map("".join),
)
def _nested(inner):
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           _nested, max_leaves=5)


@PROPERTY
@given(text=candidate_texts, mid=json_values, index=json_values)
def test_fuzz_parse_candidate_returns_or_raises_candidate_error(text, mid, index):
    try:
        parsed = parse_candidate({"candidate": text, "sdpMid": mid, "sdpMLineIndex": index})
    except CandidateError:
        return
    assert isinstance(parsed, TrickledCandidate)
    if parsed.ice is not None:
        ice = parsed.ice
        assert parsed.ignored is None
        assert ice.protocol.lower() == "udp" and not is_mdns(ice.ip)
        assert 0 < ice.port < 65536 and ice.component in (1, 2)
        assert ice.sdpMid is None or isinstance(ice.sdpMid, str)
        assert ice.sdpMLineIndex is None or type(ice.sdpMLineIndex) is int
        assert ice.sdpMid is not None or ice.sdpMLineIndex is not None
        # what the hub would send back parses to the same candidate
        assert parse_candidate(candidate_message(ice)).ice == ice
    else:
        assert parsed.ignored in (None, "mdns", "tcp")
        if parsed.ignored is None:
            assert not text  # only None / '' end the candidates


@PROPERTY
@given(st.text(max_size=300))
def test_fuzz_sanitize_offer_never_raises_and_only_drops_lines(sdp):
    result = sanitize_offer(sdp)
    kept = result.sdp.split("\r\n")
    original = sdp.replace("\r\n", "\n").split("\n")
    it = iter(original)
    assert all(line in it for line in kept)  # a subsequence of the original lines
    assert result.mdns_dropped + len(kept) <= len(original)
    assert result.end_held == (result.end_of_candidates and result.usable == 0)
