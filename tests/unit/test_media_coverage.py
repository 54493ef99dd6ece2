"""Unit tests of vbranch.domain.media_coverage: do a call's recordings cover both parties?"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vbranch.domain.media_coverage import CoverageRules, PartyMedia, RecordingSpan, coverage_issues

# fixed examples (no random seed, no example database), no per-example deadline
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)

T0 = 1_800_000_000.0  # wall clock of the call's start
RULES = CoverageRules(max_gap_s=5.0, start_grace_s=20.0, end_grace_s=5.0)


def at(offset: float | None) -> float | None:
    return None if offset is None else T0 + offset


def party(*intervals: tuple[float, float | None], rec: tuple[float, float] | None = (0, 1e6),
          video: bool = True, connected: bool = True) -> PartyMedia:
    """Intervals and recording (start offset, duration) as offsets from the call's start."""
    return PartyMedia(
        ever_connected=connected,
        intervals=[[at(s), at(e)] for s, e in intervals],
        recordings=() if rec is None else (RecordingSpan(T0 + rec[0], rec[1], has_video=video),),
    )


def issues(length: float, customer: PartyMedia | None = None, agent: PartyMedia | None = None,
           rules: CoverageRules = RULES) -> list[dict]:
    parties = {}
    if customer is not None:
        parties["customer"] = customer
    if agent is not None:
        parties["agent"] = agent
    return coverage_issues(T0, T0 + length, parties, rules)


def gap(who: str, start: float, end: float) -> dict:
    return {"party": who, "reason": "gap", "start_offset_s": start, "end_offset_s": end,
            "duration_s": round(end - start, 1)}


FULL = party((0, None))


def test_both_parties_fully_covered():
    assert issues(300, FULL, FULL) == []
    assert issues(300, party((0, 300)), party((0, 300), rec=(0, 300))) == []


def test_never_connected():
    got = issues(300, party(connected=False), FULL)
    assert got == [{"party": "customer", "reason": "never_connected"}]


def test_missing_party_counts_as_never_connected():
    assert issues(300, agent=FULL) == [{"party": "customer", "reason": "never_connected"}]
    assert issues(300) == [{"party": "customer", "reason": "never_connected"},
                           {"party": "agent", "reason": "never_connected"}]


def test_never_connected_is_the_only_issue_of_that_party():
    got = issues(300, FULL, party(rec=None, video=False, connected=False))
    assert got == [{"party": "agent", "reason": "never_connected"}]


def test_recording_missing():
    got = issues(300, FULL, party((0, None), rec=None))
    assert got == [{"party": "agent", "reason": "recording_missing"}]


def test_no_video():
    got = issues(300, party((0, None), video=False), FULL)
    assert got == [{"party": "customer", "reason": "no_video"}]


def test_no_video_and_a_gap_both_reported():
    got = issues(300, party((0, 100), (120, None), video=False), FULL)
    assert got == [{"party": "customer", "reason": "no_video"}, gap("customer", 100, 120)]


def test_gap_in_the_middle():
    got = issues(300, FULL, party((0, 100.34), (112.81, None)))
    # offsets from the call's start, to 0.1 s
    assert got == [{"party": "agent", "reason": "gap", "start_offset_s": 100.3, "end_offset_s": 112.8,
                    "duration_s": 12.5}]


def test_several_gaps_in_order():
    got = issues(300, party((0, 50), (60, 100), (103, 200), (230, None)), FULL)
    assert got == [gap("customer", 50, 60), gap("customer", 200, 230)]


def test_gaps_up_to_max_gap_ignored():
    assert issues(300, party((0, 100), (105, 200), (204, None)), FULL) == []
    assert issues(300, party((0, 100), (105.1, None)), FULL) == [gap("customer", 100, 105.1)]


def test_max_gap_rule_is_used():
    media = party((0, 100), (110, None))
    assert issues(300, media, FULL, CoverageRules(max_gap_s=10)) == []
    assert issues(300, media, FULL, CoverageRules(max_gap_s=9.9)) == [gap("customer", 100, 110)]


def test_overlapping_and_touching_intervals_merge():
    got = issues(300, party((0, 100), (50, 150), (150, 200), (190, None)), FULL)
    assert got == []
    # unsorted input too
    assert issues(300, party((150, 200), (0, 100), (190, None), (50, 150)), FULL) == []


def test_late_start_within_grace_ignored():
    assert issues(300, party((20, None)), FULL) == []
    assert issues(300, party((12, None)), FULL) == []


def test_late_start_beyond_grace_flagged():
    assert issues(300, party((20.5, None)), FULL) == [gap("customer", 0, 20.5)]
    assert issues(300, party((30, None)), FULL, CoverageRules(start_grace_s=30)) == []


def test_end_gap_within_grace_ignored():
    assert issues(300, party((0, 295)), FULL) == []


def test_end_gap_beyond_grace_flagged():
    assert issues(300, party((0, 294.5)), FULL) == [gap("customer", 294.5, 300)]


def test_end_gap_threshold_is_the_larger_of_end_grace_and_max_gap():
    media = party((0, 290))  # 10 s missing at the end
    assert issues(300, media, FULL, CoverageRules(max_gap_s=10, end_grace_s=2)) == []
    assert issues(300, media, FULL, CoverageRules(max_gap_s=2, end_grace_s=10)) == []
    assert issues(300, media, FULL, CoverageRules(max_gap_s=9, end_grace_s=9)) == [gap("customer", 290, 300)]


def test_open_interval_counts_to_the_call_end():
    assert issues(300, party((0, 100), (104, None)), FULL) == []
    # an interval still open after the end is cut at the end
    assert issues(300, party((0, 100), (104, 1000)), FULL) == []


def test_open_start_counts_from_the_call_start():
    assert issues(300, party((None, 100), (103, None)), FULL) == []


def test_intervals_outside_the_call_ignored():
    # before the start and after the end: only the part inside counts
    got = issues(300, party((-100, -10), (-5, 50), (60, 290), (310, 400)), FULL)
    assert got == [gap("customer", 50, 60), gap("customer", 290, 300)]


def test_connected_but_no_media_in_the_call_is_one_gap():
    assert issues(300, party(), FULL) == [gap("customer", 0, 300)]
    assert issues(300, party((-50, -10)), FULL) == [gap("customer", 0, 300)]


def test_recording_started_late_is_a_gap_though_media_flowed():
    got = issues(300, party((0, None), rec=(40, 260)), FULL)
    assert got == [gap("customer", 0, 40)]
    # within the start grace the late recording is forgiven
    assert issues(300, party((0, None), rec=(15, 285)), FULL) == []


def test_recording_stopped_early_is_a_gap_though_media_flowed():
    got = issues(300, party((0, None), rec=(0, 250)), FULL)
    assert got == [gap("customer", 250, 300)]


def test_recording_span_clips_a_middle_interval():
    # media from 0, recording from 30: covered 30..100 and 110..300 -> start gap and middle gap
    got = issues(300, party((0, 100), (110, None), rec=(30, 1000)), FULL)
    assert got == [gap("customer", 0, 30), gap("customer", 100, 110)]


def test_recording_entirely_outside_the_call():
    assert issues(300, party((0, None), rec=(400, 100)), FULL) == [gap("customer", 0, 300)]
    assert issues(300, party((0, None), rec=(-200, 100)), FULL) == [gap("customer", 0, 300)]


def test_negative_recording_duration_is_empty():
    assert issues(300, party((0, None), rec=(0, -5)), FULL) == [gap("customer", 0, 300)]


def test_each_party_judged_on_its_own():
    got = issues(300, party((0, 100), (120, None)), party((30, None)))
    assert got == [gap("customer", 100, 120), gap("agent", 0, 30)]


# regressions: nothing of a party covered yet is judged by the same thresholds as any gap


def test_zero_length_call_has_no_gap():
    assert coverage_issues(T0, T0, {"customer": FULL, "agent": FULL}, RULES) == []


def test_end_before_start_is_an_empty_call():
    assert coverage_issues(T0, T0 - 10, {"customer": FULL, "agent": FULL}, RULES) == []


def test_short_uncovered_start_within_grace_is_not_a_gap():
    # 3 s into the call, the party's recording has just started (nothing covered yet)
    assert issues(3, party((1, None), rec=(3, 0)), FULL) == []


def test_short_call_with_some_coverage_has_no_gap():
    # the same few seconds with a sliver covered: nothing flagged (start grace, end grace)
    assert issues(3, party((1, None), rec=(2.9, 0.1)), FULL) == []


def test_default_rules():
    assert CoverageRules() == CoverageRules(max_gap_s=5.0, start_grace_s=20.0, end_grace_s=5.0)
    got = coverage_issues(T0, T0 + 300, {"customer": party((0, 100), (106, None)), "agent": FULL})
    assert got == [gap("customer", 100, 106)]


def test_interval_from_health_snapshot_lists():
    # PartyHealth.snapshot() gives lists, the last one maybe open
    media = PartyMedia(ever_connected=True, intervals=[[T0, T0 + 50], [T0 + 70, None]],
                       recordings=(RecordingSpan(T0, 300),))
    assert coverage_issues(T0, T0 + 300, {"customer": media, "agent": FULL}, RULES) == [gap("customer", 50, 70)]


# -- against a brute-force model on a 1-second grid ------------------------------

LENGTH = 60


def model_gaps(intervals, rec, rules) -> list[tuple[int, int]]:
    """Uncovered stretches, second by second; (start, end) offsets of the flagged ones."""
    rec_start, rec_len = rec
    covered = []
    for k in range(LENGTH):  # second [k, k + 1)
        in_rec = rec_start <= k and k + 1 <= rec_start + max(0, rec_len)
        flowing = any((s is None or s <= k) and (e is None or k + 1 <= e) for s, e in intervals)
        covered.append(in_rec and flowing)
    runs = []  # maximal uncovered runs [a, b)
    k = 0
    while k < LENGTH:
        if covered[k]:
            k += 1
            continue
        j = k
        while j < LENGTH and not covered[j]:
            j += 1
        runs.append((k, j))
        k = j
    out = []
    for a, b in runs:
        if a == 0:
            limit = rules.start_grace_s
        elif b == LENGTH:
            limit = max(rules.end_grace_s, rules.max_gap_s)
        else:
            limit = rules.max_gap_s
        if b - a > limit:
            out.append((a, b))
    return out


grid = st.integers(-5, LENGTH + 5)
intervals_st = st.lists(st.tuples(grid | st.none(), grid | st.none()),
                        max_size=6)
rules_st = st.builds(CoverageRules, max_gap_s=st.sampled_from([0, 1, 2, 3, 4.5, 5, 10]),
                     start_grace_s=st.sampled_from([0, 1, 5, 20, 30]),
                     end_grace_s=st.sampled_from([0, 1, 2.5, 5, 10]))


@PROPERTY
@given(intervals=intervals_st, rules=rules_st)
def test_middle_gaps_match_brute_force(intervals, rules):
    rec = (0, LENGTH)
    media = party(*intervals, rec=rec)
    got = [(i["start_offset_s"], i["end_offset_s"]) for i in issues(LENGTH, media, FULL, rules)]
    want = model_gaps(intervals, rec, rules)
    middle = [g for g in want if g[0] > 0 and g[1] < LENGTH]
    assert [g for g in got if g[0] > 0 and g[1] < LENGTH] == middle


@PROPERTY
@given(intervals=intervals_st, rules=rules_st,
       rec=st.tuples(st.integers(-10, LENGTH + 5), st.integers(-5, LENGTH + 20)))
def test_all_gaps_match_brute_force(intervals, rules, rec):
    media = party(*intervals, rec=rec)
    got = issues(LENGTH, media, FULL, rules)
    assert all(i["party"] == "customer" and i["reason"] == "gap" for i in got)
    assert [(i["start_offset_s"], i["end_offset_s"]) for i in got] == model_gaps(intervals, rec, rules)
    assert all(i["duration_s"] == i["end_offset_s"] - i["start_offset_s"] for i in got)


def test_segments_of_a_restart_cover_the_call_but_their_gap_is_one():
    """Recorded across a server restart: two segments, media flowing in each; the restart is a gap."""
    media = PartyMedia(ever_connected=True, intervals=[[T0, T0 + 100], [T0 + 108, None]],
                       recordings=(RecordingSpan(T0, 100), RecordingSpan(T0 + 108, 192)))
    assert coverage_issues(T0, T0 + 300, {"customer": media, "agent": FULL}, RULES) == [gap("customer", 100, 108)]
    quick = PartyMedia(ever_connected=True, intervals=[[T0, T0 + 100], [T0 + 103, None]],
                       recordings=(RecordingSpan(T0, 100), RecordingSpan(T0 + 103, 197)))
    assert coverage_issues(T0, T0 + 300, {"customer": quick, "agent": FULL}, RULES) == []
    no_video = PartyMedia(ever_connected=True, intervals=[[T0, None]],
                          recordings=(RecordingSpan(T0, 100), RecordingSpan(T0 + 100, 200, has_video=False)))
    assert [i["reason"] for i in coverage_issues(T0, T0 + 300, {"customer": no_video, "agent": FULL}, RULES)] \
        == ["no_video"]
