"""The message bus port: deliver a message to a party wherever it is connected.

LocalBus delivers within this process; a Redis implementation takes its place
when app nodes scale out (parties then live on other nodes).
"""

from __future__ import annotations

from typing import Any, Protocol

from signaling.registry import Registry


class MessageBus(Protocol):
    async def publish(self, party: str, message: dict[str, Any]) -> bool: ...
    async def broadcast(self, prefix: str, message: dict[str, Any]) -> int: ...


class LocalBus:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def publish(self, party: str, message: dict[str, Any]) -> bool:
        return await self._registry.send(party, message)

    async def broadcast(self, prefix: str, message: dict[str, Any]) -> int:
        conns = self._registry.connected(prefix)
        for conn in conns:
            await conn.send(message)
        return len(conns)
