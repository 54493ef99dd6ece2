"""Loading the service checklists file (TOML) and applying it to the services at start."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pydantic import ValidationError

from vbranch.config import ConfigError
from vbranch.db.repositories import Catalog
from vbranch.domain.checklist import Checklist
from vbranch.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).with_name("checklists.toml")


def load_checklists(path: Path) -> dict[str, Checklist]:
    """Parse and validate; any problem is a ConfigError naming the file and the place."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"VBRANCH_CHECKLISTS_FILE: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    services = data.get("services")
    if not isinstance(services, dict) or set(data) - {"services"}:
        raise ConfigError(f"{path}: expected only [services.<code>] tables")
    out = {}
    for code, body in services.items():
        try:
            out[code] = Checklist.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{path}: services.{code}.{where}: {err['msg']}") from None
    return out


async def apply_checklists(rt: Runtime, checklists: dict[str, Checklist]) -> None:
    """Write each listed service's checklist into its row (the file wins over the admin API)."""
    async with rt.db.session() as db:
        catalog = Catalog(db)
        for code, checklist in checklists.items():
            svc = await catalog.service(code)
            if svc is None:
                log.info("checklist for service %r: no such service (yet)", code)
                continue
            steps = [s.model_dump() for s in checklist.steps]
            if svc.checklist != steps or svc.require_complete_recordings != checklist.require_complete_recordings:
                svc.checklist = steps
                svc.require_complete_recordings = checklist.require_complete_recordings
                db.add(svc)
        await db.commit()
