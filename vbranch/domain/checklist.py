"""Service checklists: what must happen in a call before it may end (pure, no I/O).

A step is `manual` (the agent marks it) or `facecheck` (satisfied by a face
check that matched and passed liveness, which the agent cannot mark by hand).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class ChecklistStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: Code
    name_zh: Annotated[str, Field(min_length=1, max_length=256)]
    name_en: Annotated[str, Field(min_length=1, max_length=256)]
    mandatory: bool = True
    kind: Literal["manual", "facecheck"] = "manual"


class Checklist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: tuple[ChecklistStep, ...] = ()
    # session.end needs recordings that cover both parties (see vbranch.domain.media_coverage)
    require_complete_recordings: bool = False

    @field_validator("steps")
    @classmethod
    def _unique(cls, steps: tuple[ChecklistStep, ...]) -> tuple[ChecklistStep, ...]:
        codes = [s.code for s in steps]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate step code(s): {', '.join(dupes)}")
        return steps

    def step(self, code: str) -> ChecklistStep | None:
        return next((s for s in self.steps if s.code == code), None)

    def status(self, marked: Iterable[str], facecheck_passed: bool) -> list[dict]:
        """Each step with whether it is done."""
        done = set(marked)
        return [{"code": s.code, "mandatory": s.mandatory, "kind": s.kind,
                 "done": facecheck_passed if s.kind == "facecheck" else s.code in done} for s in self.steps]

    def missing(self, marked: Iterable[str], facecheck_passed: bool) -> list[str]:
        """The mandatory steps not yet done, in checklist order."""
        return [s["code"] for s in self.status(marked, facecheck_passed) if s["mandatory"] and not s["done"]]
