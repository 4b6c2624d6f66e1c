"""The one report of a file that does not validate: pydantic's errors as the key paths of
the learner's YAML, each with its line, a did-you-mean for an unknown key, and the fix.
Used for specs, volumes.yaml, labctl.yaml and datasets.yaml alike."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from labctl.errors import LabError

# Keys a model fills in itself (ImageSpec's, by load_spec): never read from YAML, never
# offered as a did-you-mean.
INTERNAL_KEYS = ("source", "chain", "where")
# env: values are the same kind of pairs in a spec and in volumes.yaml
ENV_HINT = ("use NAME: \"value\" pairs, values quoted strings on one line without stray"
            " quotes or a trailing backslash; $NAME expands to the image's value ($PATH,"
            " $VIRTUAL_ENV ...)")


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "str") or "[" in str(part) or str(part)[:1] == "~":
            continue  # pydantic's own parts of a location, and union tags
        else:
            # A key with a newline (an injection attempt) is shown escaped, on one line.
            text = str(part).encode("unicode_escape").decode("ascii")
            out += f".{text}" if out else text
    return out


def dotted(loc: tuple[Any, ...]) -> str:
    """A pydantic location as the key path of the YAML ('torch.version')."""
    return ".".join(str(p) for p in loc if p not in ("function-after", "str")
                    and "[" not in str(p) and str(p)[:1] != "~")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for did-you-mean on nested unknown keys)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return []
        current = _model_in(current.model_fields[part].annotation)
    if current is None:
        return []
    return [k for k in current.model_fields if k not in INTERNAL_KEYS]


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = _key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        fields = _fields_at(model, tuple(err["loc"][:-1]))
        close = difflib.get_close_matches(field, fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{key}: unknown key{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if not key and msg.startswith("env."):  # the model's own check of an env value
        key, _, msg = msg.partition(": ")
    return f"{key}: {msg}" if key else msg


def validation_error(
    path: Path,
    exc: ValidationError,
    model: type[BaseModel],
    what: str,
    lines: dict[str, tuple[Path, int]] | None = None,
    hints: dict[str, str] | None = None,
) -> LabError:
    """A LabError naming the file, each key path (with its line, when ``lines`` has it)
    and a fix; ``model`` is what was validated, ``hints`` its fix per top-level key."""
    errors = exc.errors()
    out = []
    for e in errors[:12]:
        text = _describe(e, model)
        key = dotted(tuple(e["loc"])) or text.split(":", 1)[0].replace("[", ".").rstrip("]")
        found = nearest(lines or {}, key)
        out.append(f"{text} (line {found[1]})" if found and found[0] == path else
                   f"{text} ({found[0].name}, line {found[1]})" if found else text)
    if len(errors) > 12:
        out.append(f"... and {len(errors) - 12} more")
    tops = [str(e["loc"][0]) for e in errors if e["loc"]]
    hints = hints or {}
    fixes = [hints[t] for t in dict.fromkeys(tops) if t in hints]
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown and not fixes:
        allowed = _fields_at(model, tuple(unknown[0]["loc"][:-1]))
        fixes = [f"rename or remove the unknown key; allowed keys: {', '.join(allowed)}"]
    if not fixes and any("env." in d for d in out):
        fixes = [ENV_HINT]
    return LabError(
        f"invalid {what} ({len(errors)} problem{'s' if len(errors) > 1 else ''})",
        id="spec.invalid",
        file=str(path),
        details=out,
        fix="; ".join(fixes) if fixes else "correct the keys named above",
    )


def nearest(lines: dict[str, tuple[Path, int]], key: str) -> tuple[Path, int] | None:
    """(file, line) of ``key``, or of its nearest parent that has one."""
    parts = [p for p in key.split(".") if p]
    for n in range(len(parts), 0, -1):
        if found := lines.get(".".join(parts[:n])):
            return found
    return None
