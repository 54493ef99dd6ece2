"""Tamper evidence: `vbranch verify` finds every alteration; retention, legal hold and export."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.protocol.test_call_ws import negotiate, peer_for
from tests.protocol.test_routing_ws import agent, customer, mark_all
from tests.support.server import run_server
from vbranch.bootstrap import build_runtime
from vbranch.clock import FakeClock
from vbranch.cli import main as cli
from vbranch.config import load_settings
from vbranch.media.synthetic import make_clip
from vbranch.runtime import Runtime

pytestmark = pytest.mark.media


async def _recorded_call(data_dir: Path) -> str:
    clip = make_clip(seconds=2.0)
    async with run_server(data_dir, wrapup_s=0.2) as srv:
        async with customer(srv, "account_opening") as c, agent(srv, "agent1") as a:
            await c.request({"type": "consent", "recording": True, "face": False,
                             "location": {"lat": 31.2, "lon": 121.5}})
            offer = await a.recv_type("offer")
            await a.request({"type": "offer.accept", "session_id": offer["session_id"]})
            await c.recv_type("session.assigned")
            cust, ag = peer_for(clip), peer_for(clip)
            try:
                # both at once, as real clients do (the first answer waits for the other offer)
                await asyncio.gather(negotiate(c, cust), negotiate(a, ag, c.session_id))
                await asyncio.gather(cust.wait_frames("video", 10, 20), ag.wait_frames("video", 10, 20))
                await mark_all(a, c.session_id)
                await a.request({"type": "session.end", "session_id": c.session_id, "disposition": "opened"})
                await c.recv_type("session.ended")
                await srv.coordinator.settled(c.session_id)  # recordings stored, evidence sealed
            finally:
                await asyncio.gather(cust.close(), ag.close())
            await asyncio.sleep(0.5)  # wrap-up ends: completed
        return c.session_id


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A data folder holding one recorded, sealed call (made once, copied per test)."""
    data = tmp_path_factory.mktemp("sealed") / "data"
    session_id = asyncio.run(_recorded_call(data))
    return data, session_id


@pytest.fixture
def evidence(sealed, tmp_path, monkeypatch):
    src, session_id = sealed
    data = tmp_path / "data"
    shutil.copytree(src, data)
    monkeypatch.setenv("VBRANCH_DATA_DIR", str(data))
    return data, session_id


def run_verify(capsys, *args) -> tuple[int, str]:
    code = cli(["verify", *args])
    return code, capsys.readouterr().out


def db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "vbranch.db")


def test_clean_session_verifies(evidence, capsys):
    data, sid = evidence
    code, out = run_verify(capsys, sid)
    assert code == 0, out
    assert out.strip().endswith("0 problem(s)") and "OK: 1 session(s)" in out
    code, out = run_verify(capsys)
    assert code == 0, out


def test_flipped_byte_in_a_recording_is_found(evidence, capsys):
    data, sid = evidence
    with db(data) as conn:
        key = conn.execute("select storage_key from recording where session_id=? and party='agent'", (sid,)).fetchone()[0]
    path = data / "recordings" / key
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    code, out = run_verify(capsys, sid)
    assert code == 1
    assert "agent recording's file was altered" in out


def test_edited_timeline_row_is_found(evidence, capsys):
    data, sid = evidence
    with db(data) as conn:
        conn.execute("update timeline_event set data=? where session_id=? and kind='consent'",
                     (json.dumps({"recording": True, "face": True}), sid))
    code, out = run_verify(capsys, sid)
    assert code == 1
    assert "(consent) was altered" in out


def test_deleted_audit_row_is_found(evidence, capsys):
    data, sid = evidence
    with db(data) as conn:
        conn.execute("delete from audit_log where action='offer.accept'")
    code, out = run_verify(capsys, sid)
    assert code == 1
    assert "audit log:" in out


def test_deleting_the_newest_audit_rows_is_found(evidence, capsys):
    """The manifest pins the audit head at sealing: removing the rows up to it shows (no gap is left
    in the chain for the chain check alone to find, as the newest rows have nothing after them)."""
    data, sid = evidence
    with db(data) as conn:
        body = json.loads(conn.execute("select body from manifest where session_id=?", (sid,)).fetchone()[0])
        pinned = body["audit_head"]["id"]
        assert pinned > 0
        conn.execute("delete from audit_log where id >= ?", (pinned - 2,))  # the newest rows, tail and all
        assert conn.execute("select count(*) from audit_log where id > ?", (pinned,)).fetchone()[0] == 0
    code, out = run_verify(capsys, sid)
    assert code == 1, out
    assert f"audit log: entry {pinned}, pinned by the manifest of {sid}, was removed or altered" in out


def test_swapped_signature_is_found(evidence, capsys):
    data, sid = evidence
    import base64

    from vbranch.evidence.signing import SigningKey

    other = SigningKey(data / "elsewhere").sign(b"some other manifest")
    with db(data) as conn:
        conn.execute("update manifest set signature=? where session_id=?", (other, sid))
    code, out = run_verify(capsys, sid)
    assert code == 1
    assert "signature does not match" in out
    assert base64.b64decode(other)


def test_manifest_content(evidence):
    data, sid = evidence
    with db(data) as conn:
        body = json.loads(conn.execute("select body from manifest where session_id=?", (sid,)).fetchone()[0])
    assert {r["party"] for r in body["recordings"]} == {"customer", "agent"}
    assert all(len(r["sha256"]) == 64 for r in body["recordings"])
    assert body["consent"]["location"] == {"lat": 31.2, "lon": 121.5}
    assert [c["code"] for c in body["checklist"] if c["done"]] == ["random_questions", "id_shown"]
    assert body["session"]["disposition"] == "opened" and body["timeline_head"]["seq"] > 5
    # sealed at the end of the call (wrap-up), with the call's end time, not null
    with db(data) as conn:
        ended_at, connected_at = conn.execute("select ended_at, connected_at from customer_session where id=?",
                                              (sid,)).fetchone()
        wrap_up_at = conn.execute("select at from timeline_event where session_id=? and kind='state.wrap_up'",
                                  (sid,)).fetchone()[0]
    assert body["session"]["ended_at"] == ended_at == wrap_up_at and ended_at > connected_at
    assert body["evidence_complete"] is True and body["recording_issues"] == []
    assert body["audit_head"]["id"] > 0 and len(body["audit_head"]["hash"]) == 64


async def _runtime_at(data: Path, days_later: float) -> Runtime:
    clock = FakeClock(start=__import__("time").time() + days_later * 86400)
    return build_runtime(load_settings(data_dir=data), clock)


def test_legal_hold_blocks_purge_and_expiry_purges_with_audit(evidence, capsys):
    from vbranch.evidence.retention import purge_expired

    data, sid = evidence

    async def purge(days_later):
        rt = await _runtime_at(data, days_later)
        try:
            return await purge_expired(rt)
        finally:
            await rt.db.close()

    assert asyncio.run(purge(1)) == [], "nothing has expired after a day (retention 1825 days)"
    with db(data) as conn:
        conn.execute("update customer_session set legal_hold=1 where id=?", (sid,))
    held = asyncio.run(purge(4000))
    assert {p.reason for p in held} == {"held"}
    assert all((data / "recordings" / p.storage_key).exists() for p in held)
    with db(data) as conn:
        conn.execute("update customer_session set legal_hold=0 where id=?", (sid,))
    purged = asyncio.run(purge(4000))
    assert {p.reason for p in purged} == {"expired"} and len(purged) == 2
    assert not any((data / "recordings" / p.storage_key).exists() for p in purged)
    with db(data) as conn:
        actions = [r[0] for r in conn.execute("select action from audit_log order by id")]
    assert actions.count("recording.purge") == 2 and "recording.purge_blocked" in actions
    code, out = run_verify(capsys, sid)
    assert code == 0, out  # purged under retention is noted, not a mismatch; the chain is intact
    assert "purged under retention" in out


def test_export_is_verified_with_standard_tools(evidence, tmp_path, capsys):
    data, sid = evidence
    assert cli(["export", sid, "--out", str(tmp_path)]) == 0
    archive = next(tmp_path.glob("vbranch-evidence-*.zip"))
    out = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)
    folder = out / sid
    steps = [["sha256sum", "-c", "SHA256SUMS"],
             ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "public_key.pem", "-rawin",
              "-in", "manifest.json", "-sigfile", "manifest.sig"],
             [sys.executable, "verify_timeline.py", "timeline.json", "manifest.json"]]
    for step in steps:
        done = subprocess.run(step, cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    manifest = json.loads((folder / "manifest.json").read_text())
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    for rec in manifest["recordings"]:
        assert sums[f"recordings/{rec['party']}.webm"] == rec["sha256"]
    # the documented steps fail on a tampered archive
    (folder / "manifest.json").write_bytes((folder / "manifest.json").read_bytes().replace(b"opened", b"closed"))
    done = subprocess.run(steps[1], cwd=folder, capture_output=True, text=True)
    assert done.returncode != 0
