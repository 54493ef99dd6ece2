"""Evidence export: one zip per session that a third party verifies with standard tools."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

from recordings.storage import CHUNK, RecordingStorage
from vbranch.db.models import Manifest
from vbranch.db.repositories import Sessions, Timeline
from vbranch.evidence.ports import EvidenceAdapters

README = """Evidence archive of vbranch session {session_id}
=================================================

Contents
- recordings/<party>.<ext>  the customer's and the agent's recordings, as recorded (codec kept)
- timeline.json             the session's timeline: every event with its hash chain
- manifest.json             what the branch signed when the call ended: recording hashes, timeline head,
                            face check, checklist, consent, timestamps (canonical JSON, the exact signed bytes)
- manifest.sig              Ed25519 signature of manifest.json (raw 64 bytes)
- public_key.pem            the branch's public key (also published at GET /api/v1/evidence/public-key)
- SHA256SUMS                SHA-256 of every other file
- verify_timeline.py        recomputes the timeline's hash chain (Python 3 standard library only)

How to verify (OpenSSL 3, coreutils, Python 3)
1. Files are intact:
     sha256sum -c SHA256SUMS
2. The manifest was signed by the branch:
     openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig
   (prints "Signature Verified Successfully"; compare the key with the one the bank publishes)
3. The recordings are the ones signed: each "sha256" under "recordings" in manifest.json equals the line
   for recordings/<party>.<ext> in SHA256SUMS.
4. The timeline is the one signed and was not edited:
     python3 verify_timeline.py timeline.json manifest.json
   Each event's hash is SHA-256 over its prev_hash, a newline, and the canonical JSON (sorted keys, no
   spaces, UTF-8) of {{session_id, seq, at, kind, actor, data}}; the first prev_hash is 64 zeros. The
   event at manifest.json's timeline_head.seq must have timeline_head.hash.
"""

VERIFY_TIMELINE = '''import hashlib, json, sys

events = json.load(open(sys.argv[1], encoding="utf-8"))
head = json.load(open(sys.argv[2], encoding="utf-8"))["timeline_head"]
prev = "0" * 64
for e in events:
    record = {k: e[k] for k in ("session_id", "seq", "at", "kind", "actor", "data")}
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(prev.encode() + b"\\n" + body).hexdigest()
    if e["prev_hash"] != prev or e["hash"] != digest:
        sys.exit(f"timeline broken at seq {e['seq']}")
    prev = digest
signed = [e for e in events if e["seq"] == head["seq"]]
if not signed or signed[0]["hash"] != head["hash"]:
    sys.exit("the timeline does not match the signed manifest")
print(f"timeline OK: {len(events)} events, signed head at seq {head['seq']}")
'''


class ExportError(Exception):
    pass


async def export_session(rt: EvidenceAdapters, session_id: str, out: Path, actor: str = "cli") -> Path:
    storage = rt.storage
    async with rt.db.session() as db:
        if await Sessions(db).get(session_id) is None:
            raise ExportError(f"no session {session_id}")
        manifest = await db.get(Manifest, session_id)
        if manifest is None:
            raise ExportError(f"session {session_id} has no signed manifest (its call has not ended)")
        events = await Timeline(db).list(session_id)
        recordings = await Sessions(db).recordings(session_id)
    # recordings are streamed from the storage into the zip (never held in memory), the rest is small
    media = {f"recordings/{rec.party}{'' if rec.segment == 1 else f'-{rec.segment}'}."
             f"{'webm' if rec.container == 'webm' else 'mkv'}": rec.storage_key
             for rec in recordings if rec.purged_at is None}
    files: dict[str, bytes] = {}
    files["timeline.json"] = json.dumps(
        [{"session_id": e.session_id, "seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "data": e.data,
          "prev_hash": e.prev_hash, "hash": e.hash} for e in events], ensure_ascii=False, indent=1).encode()
    files["manifest.json"] = manifest.body
    files["manifest.sig"] = base64.b64decode(manifest.signature)
    files["public_key.pem"] = rt.signing_key.public_pem.encode()
    files["verify_timeline.py"] = VERIFY_TIMELINE.encode()
    files["README.txt"] = README.format(session_id=session_id).encode()
    if out.is_dir():
        out = out / f"vbranch-evidence-{session_id}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_write_zip, storage, out, session_id, media, files)
    await rt.journal.audit(actor, "evidence.export", session_id, {"file": out.name})
    return out


def _write_zip(storage: RecordingStorage, out: Path, session_id: str, media: dict[str, str],
               files: dict[str, bytes]) -> None:
    """The archive: recordings first (copied through ``open_read``), then ``files``, then SHA256SUMS.

    Written next to ``out`` and renamed into place, so a failed export leaves no partial archive.
    """
    partial = out.with_name(out.name + ".part")
    digests: dict[str, str] = {}
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, key in media.items():
                info = zipfile.ZipInfo(f"{session_id}/{name}", date_time=time.localtime(time.time())[:6])
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o600 << 16  # as writestr
                info.file_size = storage.size(key)  # so a recording over 2 GiB gets ZIP64 headers
                digest = hashlib.sha256()
                with storage.open_read(key) as src, zf.open(info, "w") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                digests[name] = digest.hexdigest()
            for name, data in files.items():
                zf.writestr(f"{session_id}/{name}", data)
                if name != "README.txt":
                    digests[name] = hashlib.sha256(data).hexdigest()
            zf.writestr(f"{session_id}/SHA256SUMS",
                        "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items())))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
