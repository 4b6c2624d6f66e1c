"""Where the shipped templates, default specs and volumes.yaml live.

In a wheel they sit in ``labctl/_shipped``; in a source checkout (editable install)
they are the repository's top-level ``templates/``, ``images/`` and ``volumes.yaml``.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def shipped_root() -> Path:
    wheel = _PKG / "_shipped"
    return wheel if wheel.is_dir() else _PKG.parent


def templates_dir() -> Path:
    return shipped_root() / "templates"


def default_images_dir() -> Path:
    return shipped_root() / "images"


def default_volumes_file() -> Path:
    return shipped_root() / "volumes.yaml"


def incontainer_dir() -> Path:
    """What runs inside containers: the images' own files (system/, image/) and the
    scripts of throw-away containers (tools/). Always inside the package."""
    return _PKG / "incontainer"


def tool(name: str) -> str:
    """The text of incontainer/tools/NAME, for a throw-away container to run."""
    return (incontainer_dir() / "tools" / name).read_text(encoding="utf-8")
