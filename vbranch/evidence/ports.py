"""What the evidence functions use of the running branch.

`vbranch.runtime.Runtime` holds the journal and the signing key defined in this
package, so the evidence modules name its parts by this protocol rather than
import it: the dependency points one way, from the runtime to the evidence.
"""

from __future__ import annotations

from typing import Protocol

from recordings.storage import RecordingStorage
from vbranch.clock import Clock
from vbranch.db.database import Database
from vbranch.evidence.journal import EvidenceJournal
from vbranch.evidence.signing import SigningKey


class EvidenceAdapters(Protocol):
    clock: Clock
    db: Database
    journal: EvidenceJournal
    storage: RecordingStorage
    signing_key: SigningKey
