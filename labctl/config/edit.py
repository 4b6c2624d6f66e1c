"""Edit a spec file the way a person would: add packages to its `extras:` list and leave
every other line, comment and blank line as it was. Pure: text in, text out."""

from __future__ import annotations

import re

from labctl.config import yamlfile
from labctl.errors import LabError


def add_extras(doc: yamlfile.Document, text: str, packages: list[str],
               inherited: list[str]) -> str:
    """``text`` (the spec file ``doc`` was read from) with ``packages`` appended to its
    extras. A spec without its own `extras:` gets one, holding the ``inherited`` extras of
    the spec it extends first (a child's list replaces its parent's)."""
    lines = text.splitlines(keepends=True)
    items = doc.data.get("extras")
    if "extras" not in doc.data:
        tail = "" if not lines or lines[-1].endswith("\n") else "\n"
        body = "".join(f"  - {_item(p)}\n" for p in [*inherited, *packages])
        return text + tail + "extras:\n" + body
    if items is None:
        items = []
    if not isinstance(items, list):
        raise LabError("extras: is not a list", file=str(doc.path),
                       fix="write extras: as a list of requirements")
    key_line = doc.lines[("extras",)] - 1
    line = lines[key_line]
    flow = re.match(r"^(extras\s*:\s*)\[(.*)\](\s*(#.*)?)$", line.rstrip("\n"))
    if flow:
        inner = flow[2].strip()
        new = ", ".join(_item(p) for p in packages)
        lines[key_line] = (f"{flow[1]}[{inner + ', ' if inner else ''}{new}]{flow[3] or ''}"
                           "\n")
        return "".join(lines)
    if not items:  # `extras:` with nothing after it
        lines[key_line] = re.sub(r"(extras\s*:)\s*(#.*)?$", r"\1 \2", line.rstrip("\n")
                                 ).rstrip() + "\n"
        after = key_line + 1
        indent = "  "
    else:
        last = doc.lines[("extras", len(items) - 1)] - 1
        indent = re.match(r"^(\s*)", lines[last])[1]  # type: ignore[index]
        after = last + 1
        while after < len(lines) and lines[after].strip() and \
                len(lines[after]) - len(lines[after].lstrip()) > len(indent):
            after += 1  # a multi-line item
    new_lines = [f"{indent}- {_item(p)}\n" for p in packages]
    if after > 0 and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    return "".join(lines[:after] + new_lines + lines[after:])


def _item(req: str) -> str:
    """A requirement as a YAML scalar: quoted when YAML would read it otherwise."""
    plain = re.fullmatch(r"[A-Za-z0-9_.-]+([<>=!~]=?[A-Za-z0-9_.*+!-]+)?", req)
    return req if plain else "'" + req.replace("'", "''") + "'"
