"""Presence stores (the port is signaling.presence): the database by default, Redis with VBRANCH_REDIS_URL."""
