"""One error type for everything a learner can fix, rendered as one screen by the CLI."""

from __future__ import annotations


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
