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
    """A problem the learner can act on: what is wrong, where, and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        file: str | None = None,
        details: list[str] | None = None,
        exit_code: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.file = file
        self.details = details or []
        self.exit_code = exit_code

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
        return LabError(f"{where}{e.strerror or e}")
    return LabError(found.message, fix=found.fix, details=[f"{e.strerror or e}"])
