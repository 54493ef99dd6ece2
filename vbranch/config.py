"""Settings from VBRANCH_* environment variables (pydantic-settings).

Unknown VBRANCH_* variables and invalid values stop the start with a message
naming the variable, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "VBRANCH_"


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names the variable."""


class IceServer(BaseModel):
    urls: list[str] | str
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Path("vbranch-data")
    database_url: str | None = None
    recordings_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_host: str | None = None
    ice_servers: list[IceServer] = []
    api_keys: Annotated[list[str], NoDecode] = []
    secret_key: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "vbranch"  # the branch's keys in Redis start with this (one Redis, several branches)
    demo: bool = False

    staff_token_ttl_s: int = Field(8 * 3600, gt=0)
    join_token_ttl_s: int = Field(2 * 3600, gt=0)
    resume_window_s: float = Field(60.0, gt=0)
    # after SIGTERM, keep serving this long with /healthz 503 "draining" and new sessions refused (so a
    # load balancer sends new customers elsewhere) before the sockets are closed with 1012
    drain_s: float = Field(0.0, ge=0, le=300)
    # how often waiting sessions whose join token expired before their customer ever said hello are ended
    expiry_sweep_s: float = Field(60.0, gt=0)
    heartbeat_interval_s: float = Field(20.0, gt=0)
    ws_max_frame_bytes: int = Field(64 * 1024, ge=1024)
    ws_rate_per_s: float = Field(20.0, gt=0)
    ws_rate_burst: int = Field(40, ge=1)
    ws_abuse_errors: int = Field(20, ge=1)
    offer_timeout_s: float = Field(15.0, gt=0)
    wrapup_s: float = Field(30.0, ge=0)
    checklists_file: Path | None = None  # default: the checklists.toml shipped in the package
    media_mode: Literal["passthrough", "stock"] = "passthrough"
    # the first party's answer waits this long for the other's offer, so both use one codec
    media_pair_wait_s: float = Field(8.0, ge=0, le=60)
    media_connect_timeout_s: float = Field(15.0, gt=0, le=300)  # then a party is flagged not connected
    media_stall_after_s: float = Field(4.0, gt=0, le=60)  # connected but no frames: stalled
    evidence_max_gap_s: float = Field(5.0, gt=0)  # longer holes in a party's recording flag the session
    evidence_start_grace_s: float = Field(20.0, ge=0)  # time the parties get to connect at the call's start
    max_reference_photo_bytes: int = Field(5 * 1024 * 1024, gt=0)
    facecheck_threshold: float = Field(0.5, gt=0, lt=1)
    facecheck_workers: int = Field(1, ge=1, le=16)
    facecheck_challenge_timeout_s: float = Field(8.0, gt=0, le=60)
    log_level: str = "info"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if len(key) < 16:
                raise ValueError("each API key must be at least 16 characters")
        return keys

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return value

    # Derived values: one place computes each.
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vbranch.db').resolve()}"

    @property
    def resolved_recordings_dir(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def public_base_url(self) -> str:
        host = self.public_host or f"{self.host}:{self.port}"
        return host if "://" in host else f"http://{host}"

    def resolved_secret_key(self) -> str:
        """The JWT secret: from the environment, or made once and kept in the data folder."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, turning every problem into one ConfigError."""
    env = os.environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigError("invalid setting(s): " + "; ".join(problems)) from None
    except ValueError as exc:  # pydantic-settings' SettingsError: a JSON value did not parse
        match = re.search(r'field "(\w+)"', str(exc))
        name = ENV_PREFIX + match.group(1).upper() if match else "a VBRANCH_* variable"
        raise ConfigError(f"invalid setting(s): {name}: not valid JSON") from None
