"""Bounds every entry point applies to what it accepts: what the branch can store is what it takes."""

INT_MAX = 2**63 - 1  # the databases' BIGINT: a larger id, offset or count is refused as input, never a 500
