"""Every label labctl puts on images and containers, in one place: they are how labctl
finds its images' state and its own labs (and only the learner's own) later."""

from __future__ import annotations

PREFIX = "org.labctl."
# Images and lab containers
SPEC = f"{PREFIX}spec"  # the spec's name
LAB = f"{PREFIX}lab"  # the lab folder
# Images
HASH = f"{PREFIX}hash"  # the content hash of the rendered context
VERSION = f"{PREFIX}version"  # the labctl that built it
BOOTSTRAP = f"{PREFIX}bootstrap"  # how `labctl base bootstrap` made a base image
TORCH = f"{PREFIX}torch"  # the torch wheel it holds: "2.10.0+cu128", "2.10.0+cpu"
STEPS = f"{PREFIX}steps"  # a short hash of each build step and those before it
# Lab containers
RUN = f"{PREFIX}run"  # the labctl that started it (marks a lab container)
OWNER = f"{PREFIX}owner"  # the host uid that started it: commands act on their own labs
URL = f"{PREFIX}url"  # Jupyter's URL, without the token
FOREGROUND = f"{PREFIX}foreground"  # "host:pid" of a foreground labctl that removes it
SYNC = f"{PREFIX}sync"  # --sync on a remote engine: [[local folder, volume], ...] (JSON)


def throwaway(kind: str) -> str:
    """The label of labctl's short-lived helper containers (serve, probe, lock, freeze)."""
    return f"{PREFIX}{kind}"
