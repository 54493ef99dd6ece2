"""The running branch: settings and the adapters every entry point shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from recordings.storage import LocalDirStorage, RecordingStorage
from vbranch.auth import TokenService, hash_api_key
from vbranch.clock import Clock, SystemClock
from vbranch.config import Settings
from vbranch.db.database import Database
from vbranch.facecheck import FaceCheckConfig, FaceCheckPool
from vbranch.journal import EvidenceJournal
from vbranch.metrics import Metrics
from vbranch.signing import SigningKey


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    db: Database
    tokens: TokenService
    metrics: Metrics
    faces: FaceCheckPool  # worker processes start on first use
    signing_key: SigningKey
    journal: EvidenceJournal
    storage: RecordingStorage  # where recordings live; nothing outside the composition root sees paths
    env_api_key_hashes: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> "Runtime":
        clock = clock or SystemClock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        metrics = Metrics()
        db = Database(settings.resolved_database_url, on_commit=metrics.db_commits.inc)

        def journaled(rows: int) -> None:
            metrics.journal_commits.inc()
            metrics.journal_rows.inc(rows)

        return cls(
            settings=settings,
            clock=clock,
            db=db,
            journal=EvidenceJournal(db, clock, on_commit=journaled),
            storage=LocalDirStorage(settings.resolved_recordings_dir),
            tokens=TokenService(settings.resolved_secret_key(), clock, settings.staff_token_ttl_s,
                                settings.join_token_ttl_s),
            metrics=metrics,
            signing_key=SigningKey(settings.data_dir),
            faces=FaceCheckPool(settings.facecheck_workers, config=FaceCheckConfig(
                threshold=settings.facecheck_threshold,
                challenge_timeout_s=settings.facecheck_challenge_timeout_s)),
            env_api_key_hashes={hash_api_key(k) for k in settings.api_keys},
        )
