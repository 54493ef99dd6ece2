"""Whether a call's recordings cover both parties for the whole call (pure, no I/O).

Dual recording means both the customer and the agent are recorded for the
whole call. A session whose recordings do not is flagged ``evidence_incomplete``
with one issue per defect, each with offsets from the call's start:

``never_connected``    the party's media never connected
``recording_missing``  it connected, but no recording of it was stored
``no_video``           its recording has no video (audio only)
``gap``                its media did not flow, or was not recorded, for longer
                       than ``max_gap_s`` (``start_offset_s``, ``end_offset_s``,
                       ``duration_s``); at the start of the call a party gets
                       ``start_grace_s`` to connect, at the end ``end_grace_s``

Coverage of a party = the intervals its media flowed (from the hub's media
health) intersected with the spans of its recording's segments (a call recorded
across a server restart has one segment per process). An interval still open
at the end counts up to the end of the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PARTIES = ("customer", "agent")


@dataclass(frozen=True)
class CoverageRules:
    max_gap_s: float = 5.0
    start_grace_s: float = 20.0
    end_grace_s: float = 5.0


@dataclass(frozen=True)
class RecordingSpan:
    started_at: float
    duration_s: float
    has_video: bool = True


@dataclass(frozen=True)
class PartyMedia:
    ever_connected: bool = False
    intervals: Sequence[Sequence[float | None]] = ()
    recordings: Sequence[RecordingSpan] = ()  # its segments
    extra: Mapping[str, Any] = field(default_factory=dict)


def _clip(intervals: Iterable[Sequence[float | None]], lo: float, hi: float) -> list[tuple[float, float]]:
    out = []
    for start, end in intervals:
        s = max(lo, float(start if start is not None else lo))
        e = min(hi, float(end if end is not None else hi))
        if e > s:
            out.append((s, e))
    out.sort()
    merged: list[tuple[float, float]] = []
    for s, e in out:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _issue(party: str, reason: str, **data: Any) -> dict[str, Any]:
    return {"party": party, "reason": reason, **data}


def _gap(party: str, start: float, end: float, origin: float) -> dict[str, Any]:
    return _issue(party, "gap", start_offset_s=round(start - origin, 1), end_offset_s=round(end - origin, 1),
                  duration_s=round(end - start, 1))


def coverage_issues(start: float, end: float, parties: Mapping[str, PartyMedia],
                    rules: CoverageRules = CoverageRules()) -> list[dict[str, Any]]:
    """Every defect of the call ``[start, end]`` (wall clock); empty when both parties are covered."""
    issues: list[dict[str, Any]] = []
    end = max(start, end)
    for party in PARTIES:
        media = parties.get(party, PartyMedia())
        if not media.ever_connected:
            issues.append(_issue(party, "never_connected"))
            continue
        if not media.recordings:
            issues.append(_issue(party, "recording_missing"))
            continue
        if not all(rec.has_video for rec in media.recordings):
            issues.append(_issue(party, "no_video"))
        pieces = []
        for rec in media.recordings:
            lo, hi = max(start, rec.started_at), min(end, rec.started_at + max(0.0, rec.duration_s))
            if hi > lo:
                pieces.extend(_clip(media.intervals, lo, hi))
        covered = _clip(pieces, start, end)  # merged, in order
        if not covered:
            if end - start > max(rules.start_grace_s, rules.max_gap_s):
                issues.append(_gap(party, start, end, start))
            continue
        if covered[0][0] - start > rules.start_grace_s:
            issues.append(_gap(party, start, covered[0][0], start))
        for (_, prev_end), (next_start, _) in zip(covered, covered[1:]):
            if next_start - prev_end > rules.max_gap_s:
                issues.append(_gap(party, prev_end, next_start, start))
        if end - covered[-1][1] > max(rules.end_grace_s, rules.max_gap_s):
            issues.append(_gap(party, covered[-1][1], end, start))
    return issues
