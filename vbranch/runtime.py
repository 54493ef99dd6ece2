"""The running branch: settings and the adapters every entry point shares (built in vbranch.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field

from recordings.storage import RecordingStorage
from vbranch.auth import TokenService
from vbranch.clock import Clock
from vbranch.config import Settings
from vbranch.db.database import Database
from vbranch.evidence.journal import EvidenceJournal
from vbranch.evidence.replays import ReplayLedger
from vbranch.evidence.signing import SigningKey
from vbranch.facecheck import FaceCheckPool
from vbranch.metrics import Metrics


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
    replays: ReplayLedger  # media tokens whose replay is audited
    env_api_key_hashes: set[str] = field(default_factory=set)
