"""A client host of the test's own: a network namespace joined to this one by a veth pair.

What runs inside (``ip netns exec``) reaches the server only over the veth, so
the test can change the client's network for real: take its address away (the
path is gone, as when a phone leaves a Wi-Fi network) and give it a new one
(the phone is on 4G), or add loss with ``tc netem``. Needs root (CAP_NET_ADMIN)
and iproute2; :func:`available` says whether this machine has them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


def available() -> bool:
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False
    probe = f"vbprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError):
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return True


class ClientHost:
    """``with ClientHost() as net``: ``net.server_ip`` (this side), ``net.address`` (the client's)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = f"vbc{tag}"
        self.host_if, self.ns_if = f"vbh{tag}", f"vbc{tag}"
        subnet = 16 + int(tag, 16) % 200  # 10.231.x.0/24: one per host, so parallel runs do not meet
        self.prefix = f"10.231.{subnet}"
        self.server_ip = f"{self.prefix}.1"
        self.address: str | None = None

    def __enter__(self) -> ClientHost:
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            _ip("addr", "add", f"{self.server_ip}/24", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("link", "set", "lo", "up", ns=self.ns)
            _ip("link", "set", self.ns_if, "up", ns=self.ns)
            self.move_to(f"{self.prefix}.2")
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10, check=False)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10, check=False)

    def drop_address(self) -> None:
        """The client's address is gone: nothing it sent or was sent to it gets through."""
        if self.address is not None:
            _ip("addr", "del", f"{self.address}/24", "dev", self.ns_if, ns=self.ns)
            self.address = None

    def move_to(self, address: str) -> None:
        """The client is on a new address (another network)."""
        self.drop_address()
        _ip("addr", "add", f"{address}/24", "dev", self.ns_if, ns=self.ns)
        self.address = address

    def wrap(self, executable: str, folder) -> str:
        """A script that runs ``executable`` inside the namespace (for Playwright's executable_path)."""
        path = folder / f"in-{self.ns}.sh"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.ns} {executable} "$@"\n')
        path.chmod(0o755)
        return str(path)
