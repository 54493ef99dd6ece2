"""The composition root: the one place where the branch's parts are built and wired together.

`build_runtime` makes the shared adapters (database, evidence journal, recording
storage, tokens, metrics, face-check pool, signing key) for the app and for each
CLI command; `bootstrap` adds the live branch on top of them (sessions, the
connection registry and bus, the queue desk, the call media and its hub, the
coordinator) and connects their callbacks. Nothing else constructs these; the
rule is checked by tests/unit/test_import_graph.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from recordings.storage import LocalDirStorage
from signaling.bus import LocalBus
from signaling.presence import PresenceStore
from signaling.registry import Registry
from vbranch.auth import MEDIA_TOKEN_TTL_S, TokenService, hash_api_key
from vbranch.calls.coordinator import Coordinator, watchers
from vbranch.calls.media import CallMedia
from vbranch.calls.service import CallService
from vbranch.clock import Clock, SystemClock
from vbranch.config import Settings
from vbranch.db.database import Database
from vbranch.evidence.journal import EvidenceJournal
from vbranch.evidence.replays import ReplayLedger
from vbranch.evidence.signing import SigningKey
from vbranch.facecheck import FaceCheckConfig, FaceCheckPool
from vbranch.media.hub import MediaHub
from vbranch.metrics import Metrics
from vbranch.presence.database import DatabasePresence
from vbranch.queue.desk import QueueDesk
from vbranch.queue.sessions import SessionService
from vbranch.runtime import Runtime


@dataclass
class Branch:
    """A running branch: the shared adapters and the live parts built on them."""

    runtime: Runtime
    sessions: SessionService
    registry: Registry
    bus: LocalBus
    desk: QueueDesk
    media: CallMedia  # with its MediaHub as media.hub
    calls: CallService
    coordinator: Coordinator
    # set at SIGTERM while VBRANCH_DRAIN_S runs: /healthz says so and new sessions are refused
    draining: bool = False


def build_database(settings: Settings, on_commit: Callable[[], None] | None = None) -> Database:
    """The branch's database (the data folder is made first: the default SQLite file lives in it)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.resolved_database_url, on_commit=on_commit)


def build_presence(settings: Settings, db: Database) -> PresenceStore:
    """Where resume tokens and grace windows outlive the process: Redis if configured, else the database."""
    if settings.redis_url:
        from vbranch.presence.redis_store import RedisPresence

        return RedisPresence(settings.redis_url, f"{settings.redis_prefix}:presence")
    return DatabasePresence(db)


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    """The shared adapters, once per app or CLI command."""
    clock = clock or SystemClock()
    metrics = Metrics()
    db = build_database(settings, on_commit=metrics.db_commits.inc)

    def journaled(rows: int) -> None:
        metrics.journal_commits.inc()
        metrics.journal_rows.inc(rows)

    return Runtime(
        settings=settings,
        clock=clock,
        db=db,
        journal=EvidenceJournal(db, clock, on_commit=journaled),
        storage=LocalDirStorage(settings.resolved_recordings_dir),
        replays=ReplayLedger(clock, MEDIA_TOKEN_TTL_S),
        tokens=TokenService(settings.resolved_secret_key(), clock, settings.staff_token_ttl_s,
                            settings.join_token_ttl_s),
        metrics=metrics,
        signing_key=SigningKey(settings.data_dir),
        faces=FaceCheckPool(settings.facecheck_workers, config=FaceCheckConfig(
            threshold=settings.facecheck_threshold,
            challenge_timeout_s=settings.facecheck_challenge_timeout_s)),
        env_api_key_hashes={hash_api_key(k) for k in settings.api_keys},
    )


def bootstrap(settings: Settings, clock: Clock | None = None) -> Branch:
    """The whole branch, wired: what `create_app` serves."""
    rt = build_runtime(settings, clock)
    sessions = SessionService(rt)
    registry = Registry(rt.clock, settings.resume_window_s, build_presence(settings, rt.db))
    bus = LocalBus(registry)
    desk = QueueDesk(rt, bus, sessions, partial(watchers, registry))
    hub = MediaHub(rt.storage, rt.clock, [s.model_dump(exclude_none=True) for s in settings.ice_servers],
                   mode=settings.media_mode, pair_wait_s=settings.media_pair_wait_s,
                   connect_timeout_s=settings.media_connect_timeout_s,
                   stall_after_s=settings.media_stall_after_s)
    media = CallMedia(rt, bus, sessions, hub)
    calls = CallService(rt, sessions, registry, bus, desk, media)
    coordinator = Coordinator(rt, sessions, registry, desk, media, calls)
    # the callbacks, each from the part that notices to the part that acts
    hub.on_event = media.media_event  # media health, recordings: journaled and told to both parties
    desk.on_call_started = calls.call_started  # the call's rules and its media watch start
    desk.on_agent_lost = calls.agent_lost  # the agent did not come back: the call is interrupted
    desk.on_wrapup_over = calls.wrapup_over  # the session is completed
    media.on_face_check = calls.face_check_finished  # a passed face check satisfies the checklist
    registry.on_gone = coordinator.party_gone  # a party's resume window passed
    return Branch(runtime=rt, sessions=sessions, registry=registry, bus=bus, desk=desk, media=media,
                  calls=calls, coordinator=coordinator)
