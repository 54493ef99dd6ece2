"""Presence in Redis (VBRANCH_REDIS_URL): shared by every node, one hash of party -> record."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from signaling.presence import Presence


class RedisPresence:
    def __init__(self, url: str, key: str = "vbranch:presence") -> None:
        self.redis = Redis.from_url(url)
        self.key = key

    async def put(self, record: Presence) -> None:
        await self.redis.hset(self.key, record.party, json.dumps(
            {"token_hash": record.token_hash, "connected": record.connected, "grace_until": record.grace_until}))

    async def remove(self, party: str) -> None:
        await self.redis.hdel(self.key, party)

    async def all(self) -> list[Presence]:
        out = []
        for party, raw in (await self.redis.hgetall(self.key)).items():
            data = json.loads(raw)
            out.append(Presence(party.decode(), data["token_hash"], data["connected"], data["grace_until"]))
        return out

    async def close(self) -> None:
        await self.redis.aclose()
