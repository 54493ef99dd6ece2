from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Channel(StrEnum):
    MINIPROGRAM = "miniprogram"
    APP = "app"
    H5 = "h5"
    WEB = "web"
