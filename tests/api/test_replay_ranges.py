"""The replay endpoint serves recordings through the storage port with HTTP Range (RFC 9110 section 14).

Run on the real server, once with the branch's own local storage and once with a storage that has
no files on this machine (as an S3-compatible backend will be).
"""

from __future__ import annotations

import hashlib

import pytest

from vbranch.api.recording_routes import parse_range
from recordings.playback import playback_key
from tests.support.memory_storage import MemoryStorage
from vbranch.db.models import Recording

DATA = bytes(range(256)) * 40  # 10 240 bytes
N = len(DATA)


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("bytes=0-", (0, None)),
    ("bytes=100-", (100, None)),
    ("bytes=10-19", (10, 19)),
    ("bytes=-500", (None, 500)),
    ("bytes=-0", (None, 0)),
    ("Bytes = 5 - 9", (5, 9)),
    ("bytes=9-5", None),  # invalid: ignored
    ("bytes=0-1,5-6", None),  # several ranges: ignored (the whole object)
    ("items=0-5", None),
    ("bytes=-", None),
    ("bytes=abc", None),
    ("", None),
])
def test_parse_range(header, expected):
    assert parse_range(header) == expected


async def add_recording(srv, key: str, data: bytes, party: str = "customer", container: str = "webm",
                        video_codec: str | None = "vp8") -> tuple[str, str]:
    """A session with one recording stored under ``key``; returns (session id, its media URL)."""
    rt = srv.runtime
    sid = (await srv.create_session())["session_id"]
    with rt.storage.open_write(key) as fh:
        fh.write(data)
    stored = rt.storage.finalize(key)
    async with rt.db.session() as db:
        db.add(Recording(session_id=sid, party=party, storage_key=key, container=container,
                         video_codec=video_codec, audio_codec="opus", started_at=rt.clock.now(), duration_s=1.0,
                         size_bytes=stored.size_bytes, sha256=stored.sha256, finalised_at=rt.clock.now()))
        await db.commit()
    reviewer = await srv.login("reviewer")
    async with srv.http() as h:
        recs = (await h.get(f"/api/v1/sessions/{sid}/recordings",
                            headers={"Authorization": f"Bearer {reviewer}"})).json()
    return sid, recs[0]["media_url"]


async def replay_audits(srv, sid: str) -> int:
    admin = await srv.login("admin")
    async with srv.http() as h:
        rows = (await h.get("/api/v1/audit", params={"session_id": sid},
                            headers={"Authorization": f"Bearer {admin}"})).json()
    return sum(1 for r in rows if r["action"] == "recording.replay")


@pytest.fixture(params=["local", "memory"])
async def srv(request, server):
    if request.param == "memory":
        server.runtime.storage = MemoryStorage()  # read at request time by the replay endpoint
    yield server


async def test_ranges_statuses_and_headers(srv):
    _, url = await add_recording(srv, "t1/customer.webm", DATA)
    async with srv.http() as h:
        full = await h.get(url)
        assert full.status_code == 200 and full.content == DATA
        assert full.headers["content-length"] == str(N) and full.headers["accept-ranges"] == "bytes"
        assert full.headers["content-type"] == "video/webm"
        assert full.headers["cache-control"] == "private, no-store"
        assert "content-range" not in full.headers
        cases = [("bytes=0-99", 0, 99), ("bytes=100-", 100, N - 1), ("bytes=10-19", 10, 19),
                 ("bytes=-500", N - 500, N - 1), ("bytes=-99999", 0, N - 1), ("bytes=5000-999999", 5000, N - 1),
                 (f"bytes={N - 1}-", N - 1, N - 1)]
        for header, first, last in cases:
            r = await h.get(url, headers={"Range": header})
            assert r.status_code == 206, header
            assert r.content == DATA[first:last + 1], header
            assert r.headers["content-range"] == f"bytes {first}-{last}/{N}", header
            assert r.headers["content-length"] == str(last - first + 1), header
            assert r.headers["content-type"] == "video/webm" and r.headers["accept-ranges"] == "bytes"
            assert r.headers["cache-control"] == "private, no-store"
        for header in (f"bytes={N}-", f"bytes={N + 10}-{N + 20}", "bytes=-0"):
            r = await h.get(url, headers={"Range": header})
            assert r.status_code == 416, header
            assert r.headers["content-range"] == f"bytes */{N}" and r.content == b""
        for header in ("bytes=0-1,5-6", "bytes=9-5", "items=0-1"):  # not served as one range: the whole object
            r = await h.get(url, headers={"Range": header})
            assert r.status_code == 200 and r.content == DATA, header


async def test_each_media_token_is_audited_once_whatever_its_ranges(srv):
    """No range serves a byte unaudited: a token's first request is audited, whatever range it asks
    for (the last bytes, from byte 1, a 416), and its later requests (seeks) add nothing."""
    sid, url = await add_recording(srv, "t2/customer.webm", DATA)
    async with srv.http() as h:
        for header in ("bytes=-100000000", "bytes=1-", None, "bytes=0-", "bytes=500-", f"bytes={N}-"):
            await h.get(url, headers={"Range": header} if header else {})
    assert await replay_audits(srv, sid) == 1
    for first in ("bytes=1-", f"bytes={N}-", None):  # a fresh token (a new listing) each time
        reviewer = await srv.login("reviewer")
        async with srv.http() as h:
            fresh = (await h.get(f"/api/v1/sessions/{sid}/recordings",
                                 headers={"Authorization": f"Bearer {reviewer}"})).json()[0]["media_url"]
            await h.get(fresh, headers={"Range": first} if first else {})
            await h.get(fresh, headers={"Range": "bytes=0-"})
    assert await replay_audits(srv, sid) == 4
    admin = await srv.login("admin")
    async with srv.http() as h:
        rows = (await h.get("/api/v1/audit", params={"session_id": sid},
                            headers={"Authorization": f"Bearer {admin}"})).json()
    replays = [r for r in rows if r["action"] == "recording.replay"]
    assert {r["detail"]["range"] for r in replays} == {"bytes=-100000000", "bytes=1-", f"bytes={N}-", None}
    assert len({r["detail"]["media_token_sha256"] for r in replays}) == 4


async def test_the_ledger_audits_each_token_once_and_every_request_waits_for_it():
    import asyncio

    from vbranch.clock import FakeClock
    from vbranch.evidence.replays import ReplayLedger

    clock = FakeClock(1000.0)
    ledger = ReplayLedger(clock, token_ttl_s=900)
    audits: list[str] = []
    release = asyncio.Event()
    failing = [True]

    async def audit(digest: str) -> None:
        await release.wait()
        if failing[0]:
            raise RuntimeError("the journal is away")
        audits.append(digest)

    # two requests with a new token: one audit, and neither goes on before it is written
    first = [asyncio.create_task(ledger.audited("token-a", audit)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in first)
    release.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)  # the audit failed: so did both requests
    failing[0] = False
    await ledger.audited("token-a", audit)  # the next request audits instead
    await ledger.audited("token-a", audit)  # a seek: nothing more
    assert audits == [ledger.digest("token-a")]
    clock.advance(901)
    await ledger.audited("token-b", audit)
    assert list(ledger._audits) == [ledger.digest("token-b")]  # token-a could not be valid any more


async def test_missing_and_purged_files_are_404(srv):
    from sqlmodel import select

    sid, url = await add_recording(srv, "t3/customer.webm", DATA)
    srv.runtime.storage.delete("t3/customer.webm")
    async with srv.http() as h:
        r = await h.get(url, headers={"Range": "bytes=0-"})
        assert r.status_code == 404 and "missing" in r.text
        async with srv.runtime.db.session() as db:
            row = (await db.exec(select(Recording).where(Recording.session_id == sid))).one()
            row.purged_at = srv.runtime.clock.now()
            db.add(row)
            await db.commit()
        r = await h.get(url, headers={"Range": "bytes=0-"})
        assert r.status_code == 404 and "no such recording" in r.text


async def test_empty_recording(srv):
    _, url = await add_recording(srv, "t4/customer.webm", b"")
    async with srv.http() as h:
        r = await h.get(url)
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
        r = await h.get(url, headers={"Range": "bytes=0-"})
        assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"


@pytest.mark.media
async def test_h264_is_served_from_its_mp4_copy_made_through_the_port(srv, tmp_path):
    import av

    from tests.media.helpers import write_h264_mkv

    storage = srv.runtime.storage
    key = "t5/agent.mkv"
    video = write_h264_mkv(storage, key, 1.0, 200_000)
    original = storage.read_range(key)
    storage.delete(key)
    _, url = await add_recording(srv, key, original, party="agent", container="matroska", video_codec="h264")
    async with srv.http() as h:
        head = await h.get(url, headers={"Range": "bytes=0-"})
        assert head.status_code == 206 and head.headers["content-type"] == "video/mp4"
        copy = playback_key(key)
        assert storage.exists(copy) and head.content == storage.read_range(copy)
        tail = await h.get(url, headers={"Range": "bytes=-64"})
        assert tail.status_code == 206 and tail.content == head.content[-64:]
    path = tmp_path / "copy.mp4"
    path.write_bytes(head.content)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == len(video)
    # the original is untouched: it is what is hashed and signed
    assert hashlib.sha256(storage.read_range(key)).hexdigest() == hashlib.sha256(original).hexdigest()
