"""Evidence hashing: canonical JSON and hash chains (pure, no I/O)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """SHA-256 over the previous link and the canonical record."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(dict(record))).hexdigest()


def verify_chain(links: Iterable[tuple[Mapping[str, Any], str, str]]) -> list[int]:
    """Given (record, prev_hash, hash) in order, return the indexes of broken links."""
    broken: list[int] = []
    expected_prev = GENESIS
    for i, (record, prev_hash, digest) in enumerate(links):
        if prev_hash != expected_prev or chain_hash(prev_hash, record) != digest:
            broken.append(i)
        expected_prev = digest
    return broken


MANIFEST_VERSION = 3  # 2: evidence_complete, recording_issues, audit_head; 3: recording segments


def build_manifest(*, session: Mapping[str, Any], recordings: list[Mapping[str, Any]],
                   timeline_head: Mapping[str, Any], face_checks: list[Mapping[str, Any]],
                   checklist: list[Mapping[str, Any]], consent: Mapping[str, Any], sealed_at: float,
                   recording_issues: list[Mapping[str, Any]] | None = None,
                   audit_head: Mapping[str, Any] | None = None) -> bytes:
    """The canonical bytes of a session's evidence manifest (what gets signed).

    ``evidence_complete`` is false when ``recording_issues`` (vbranch.domain.media_coverage)
    name any party the recordings do not cover.
    """
    issues = [dict(i) for i in recording_issues or []]
    return canonical_json({
        "manifest_version": MANIFEST_VERSION,
        "session": dict(session),
        "recordings": sorted((dict(r) for r in recordings), key=lambda r: (r["party"], r.get("segment", 1))),
        "timeline_head": dict(timeline_head),
        "audit_head": dict(audit_head or {}),  # pins the audit log: later deletions of its rows show
        "face_checks": [dict(f) for f in face_checks],
        "checklist": [dict(c) for c in checklist],
        "consent": dict(consent),
        "evidence_complete": not issues,
        "recording_issues": issues,
        "sealed_at": sealed_at,
    })
