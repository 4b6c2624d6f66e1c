"""One error type for everything a learner can fix, and the one table that says what an
error's words mean (tables/errors.yaml): engine answers, build and resolver output, and
labctl's own OSErrors are all classified there."""

from __future__ import annotations

import errno as errno_names
import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from labctl import tables

Where = Literal["engine", "build", "resolve", "os"]


class LabError(Exception):
    """A problem the learner can act on: what is wrong, where, and how to fix it. ``id``
    names it for good (tables/error_ids.yaml, or a row of tables/errors.yaml): printed
    with it, searchable, what tests and `--json` read; the words may change, the id not."""

    def __init__(
        self,
        message: str,
        *,
        id: str,
        fix: str | None = None,
        file: str | None = None,
        details: list[str] | None = None,
        exit_code: int = 1,
    ) -> None:
        super().__init__(message)
        self.id = id
        self.message = message
        self.fix = fix
        self.file = file
        self.details = details or []
        self.exit_code = exit_code
        self.extra: dict[str, object] = {}  # more for --json (a conflict's ways out)

    def as_dict(self) -> dict[str, object]:
        """What `--json` prints on stdout when a command fails: {"error": this, **extra}."""
        return {"id": self.id, "message": self.message, "fix": self.fix, "file": self.file,
                "details": self.details}

    def __str__(self) -> str:
        parts = [f"{self.file}: {self.message}" if self.file else self.message]
        parts += [f"  {d}" for d in self.details]
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return "\n".join(parts)


@dataclass(frozen=True)
class Advice:
    """A row of tables/errors.yaml, filled in for one error."""

    id: str
    message: str
    fix: str


class _Blanks(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return {"spec": "NAME", "path": "that path", "engine": "the engine"}.get(key, key)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    where: list[Where] = Field(alias="in")
    match: str | None = None
    errno: list[str] = Field(default_factory=list)
    message: str
    fix: str


class _Table(BaseModel):
    rows: list[_Row]


@cache
def _rows() -> tuple[tuple[_Row, re.Pattern[str] | None, frozenset[int]], ...]:
    return tuple(
        (row, re.compile(row.match, re.I) if row.match else None,
         frozenset(getattr(errno_names, n) for n in row.errno))
        for row in tables.load("errors.yaml", _Table).rows
    )


def advise(text: str, where: Where, *, errno: int | None = None, **values: str
           ) -> Advice | None:
    """The first row of the table that applies to ``text`` (or ``errno``) in ``where``,
    with {spec}, {path} and {engine} filled in from ``values``; None when none does."""
    fill = _Blanks(values)
    for row, pattern, numbers in _rows():
        if where not in row.where:
            continue
        if (errno is not None and errno in numbers) or (pattern and pattern.search(text)):
            return Advice(row.id, row.message.format_map(fill), row.fix.format_map(fill))
    return None


def os_error(e: OSError) -> LabError:
    """An OSError of labctl's own (a folder it cannot use, a full disk, an unresolvable
    host) as the advice that fits it: not every OSError is a root-owned folder."""
    path = str(e.filename) if e.filename else ""
    text = f"{e.strerror or ''} {e}"
    found = advise(text, "os", errno=e.errno, path=path or "that path")
    if found is None:
        where = f"{path}: " if path else ""
        return LabError(f"{where}{e.strerror or e}", id="os.error")
    return LabError(found.message, id=found.id, fix=found.fix, details=[f"{e.strerror or e}"])


class _IdRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9]*\.[a-z0-9][a-z0-9-]*$")
    what: str  # what went wrong, in general
    fix: str  # the usual way out (the error itself says it for the case at hand)


class _Ids(BaseModel):
    errors: list[_IdRow]


@cache
def error_table() -> dict[str, tuple[str, str]]:
    """Every error id labctl raises -> (what, fix): tables/error_ids.yaml, then the rows of
    tables/errors.yaml (errors classified by their words)."""
    out = {r.id: (r.what, r.fix) for r in tables.load("error_ids.yaml", _Ids).errors}
    for row, _, _ in _rows():
        out.setdefault(row.id, (row.message, row.fix))
    return out
