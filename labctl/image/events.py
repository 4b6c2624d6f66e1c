"""What a build reports as it goes, whichever backend runs it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BuildEvent:
    """One thing worth showing: a new step, a line of output, or a cache hit."""

    kind: str  # "step" | "output" | "cached"
    text: str
    step: int = 0
    total: int = 0
    key: str = ""
