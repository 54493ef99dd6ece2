"""A hub with a live call, run as a separate process so a test can SIGKILL it.

    python tests/media/crash_hub.py RECORDINGS_DIR

Prints JSON lines: each ``media.recording_started`` event, then ``call_up`` and
a ``tick`` every 0.25 s, until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recordings.storage import LocalDirStorage  # noqa: E402
from vbranch.media.hub import MediaHub  # noqa: E402
from vbranch.media.synthetic import ClientPeer, PreEncodedAudioTrack, PreEncodedVideoTrack, make_clip  # noqa: E402


def say(**data: object) -> None:
    print(json.dumps(data), flush=True)


async def main(root: str) -> None:
    clip = make_clip(320, 240, 15, 4.0, 300_000)

    def on_event(session_id: str, kind: str, data: dict) -> None:
        if kind == "media.recording_started":
            say(event=kind, **data)

    hub = MediaHub(LocalDirStorage(root), ice_servers=[], on_event=on_event)
    peers = []
    for party in ("customer", "agent"):
        peer = ClientPeer(video=PreEncodedVideoTrack(clip.video, clip.fps), audio=PreEncodedAudioTrack(clip.audio))
        await peer.connect_to_hub(hub, "crash", party)
        peers.append(peer)
    for peer in peers:
        await peer.wait_frames("video", 5, timeout=20)
    say(event="call_up", at=time.time())
    while True:
        await asyncio.sleep(0.25)
        say(event="tick", at=time.time())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
