"""`labctl data scan`: which catalogue entries the notebooks and scripts of a folder use
(each entry's `uses` patterns, searched in code cells, .py and .md files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from labctl.data.catalogue import Catalogue

SUFFIXES = (".ipynb", ".py", ".md")
MAX_FILE = 5 << 20  # a notebook with outputs can be large; its code is not


def _code(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".ipynb":
        return text
    try:
        cells = json.loads(text).get("cells", [])
    except (json.JSONDecodeError, AttributeError):
        return text
    return "\n".join("".join(c.get("source", "")) if isinstance(c.get("source"), list)
                     else str(c.get("source", "")) for c in cells
                     if isinstance(c, dict) and c.get("cell_type") == "code")


def scan(folder: Path, cat: Catalogue) -> dict[str, list[Path]]:
    """Entry name -> the files (sorted) that use it."""
    patterns = {name: [re.compile(p) for p in e.uses] for name, e in cat.entries.items()}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (path.suffix not in SUFFIXES or not path.is_file()
                or any(p.startswith(".") for p in rel.parts) or path.stat().st_size > MAX_FILE):
            continue
        code = _code(path)
        for name, pats in patterns.items():
            if any(p.search(code) for p in pats):
                found.setdefault(name, []).append(rel)
    return found
