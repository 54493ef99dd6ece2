"""Unit tests of vbranch.media.health: a party's media states and coverage intervals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbranch.media.health import STATES, PartyHealth

# fixed examples (no random seed, no example database), no per-example deadline
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)

T0 = 1_800_000_000.0


def test_initial_state():
    h = PartyHealth("customer")
    assert (h.state, h.since, h.ever_connected, h.not_connected_flagged, h.intervals) == (
        "waiting", None, False, False, [])


def test_connected_opens_an_interval():
    h = PartyHealth("customer")
    assert h.move("connecting", T0) == "waiting"
    assert h.intervals == []
    assert h.move("connected", T0 + 2) == "connecting"
    assert h.intervals == [[T0 + 2, None]]
    assert (h.state, h.since, h.ever_connected) == ("connected", T0 + 2, True)


@pytest.mark.parametrize("state", ["stalled", "lost"])
def test_stalled_or_lost_closes_the_interval(state):
    h = PartyHealth("agent")
    h.move("connecting", T0)
    h.move("connected", T0 + 1)
    assert h.move(state, T0 + 30) == "connected"
    assert h.intervals == [[T0 + 1, T0 + 30]]
    assert (h.state, h.since, h.ever_connected) == (state, T0 + 30, True)


@pytest.mark.parametrize("state", ["waiting", "connecting"])
def test_leaving_connected_any_way_closes_the_interval(state):
    h = PartyHealth("agent")
    h.move("connected", T0)
    h.move(state, T0 + 5)
    assert h.intervals == [[T0, T0 + 5]]


def test_resume_reopens():
    h = PartyHealth("customer")
    h.move("connecting", T0)
    h.move("connected", T0 + 1)
    h.move("stalled", T0 + 10)
    assert h.move("connected", T0 + 15) == "stalled"
    assert h.intervals == [[T0 + 1, T0 + 10], [T0 + 15, None]]
    h.move("lost", T0 + 20)
    h.move("connecting", T0 + 21)  # a new offer
    h.move("connected", T0 + 23)
    assert h.intervals == [[T0 + 1, T0 + 10], [T0 + 15, T0 + 20], [T0 + 23, None]]


def test_moves_that_do_not_involve_connected_leave_intervals_alone():
    h = PartyHealth("customer")
    h.move("connected", T0)
    h.move("stalled", T0 + 5)
    h.move("lost", T0 + 6)  # stalled -> lost: the interval was already closed at the stall
    assert h.intervals == [[T0, T0 + 5]]
    assert h.state == "lost" and h.since == T0 + 6


@pytest.mark.parametrize("state", STATES)
def test_same_state_returns_none_and_changes_nothing(state):
    h = PartyHealth("customer")
    if state != "waiting":
        h.move(state, T0)
    before = h.snapshot()
    assert h.move(state, T0 + 10) is None
    assert h.snapshot() == before
    assert h.since == (None if state == "waiting" else T0)


def test_connected_again_does_not_open_a_second_interval():
    h = PartyHealth("customer")
    h.move("connected", T0)
    assert h.move("connected", T0 + 3) is None
    assert h.intervals == [[T0, None]]


@pytest.mark.parametrize("state", ["", "closed", "failed", "Connected", "CONNECTED", None, 1])
def test_unknown_state_raises(state):
    h = PartyHealth("customer")
    h.move("connected", T0)
    before = h.snapshot()
    with pytest.raises(ValueError, match="unknown media state"):
        h.move(state, T0 + 1)
    assert h.snapshot() == before


def test_connected_clears_the_not_connected_flag():
    h = PartyHealth("customer", not_connected_flagged=True)
    h.move("connecting", T0)
    assert h.not_connected_flagged is True
    h.move("connected", T0 + 40)
    assert h.not_connected_flagged is False


def test_close_before_open_is_clamped_to_a_zero_length_interval():
    # the hub may date a stall back to the last frame, which can precede the (re)connect
    h = PartyHealth("customer")
    h.move("connected", T0 + 10)
    h.move("stalled", T0 + 8)
    assert h.intervals == [[T0 + 10, T0 + 10]]


def test_snapshot_is_a_copy():
    h = PartyHealth("agent")
    h.move("connected", T0)
    snap = h.snapshot()
    assert snap == {"party": "agent", "state": "connected", "since": T0, "ever_connected": True,
                    "intervals": [[T0, None]]}
    snap["intervals"][0][1] = 0
    assert h.intervals == [[T0, None]]


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(STATES), st.floats(0, 100)), max_size=30))
def test_intervals_follow_the_connected_periods(moves):
    h = PartyHealth("customer")
    now = T0
    state = "waiting"
    opened: list[list[float | None]] = []  # the model
    for target, dt in moves:
        now += dt
        previous = h.move(target, now)
        if target == state:
            assert previous is None
            continue
        assert previous == state
        if target == "connected":
            opened.append([now, None])
        elif state == "connected":
            opened[-1][1] = now
        state = target
        assert (h.state, h.since) == (state, now)
    assert h.intervals == opened
    assert h.ever_connected == bool(opened)
    # at most the last interval is open, and only while connected
    assert [i[1] is None for i in h.intervals] == [False] * (len(opened) - 1) + [h.state == "connected"] * bool(opened)
    ends = [x for i in h.intervals for x in i if x is not None]
    assert ends == sorted(ends)
