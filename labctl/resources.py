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


def data_dir() -> Path:
    """Compatibility tables and other data files (always inside the package)."""
    return _PKG / "data"
