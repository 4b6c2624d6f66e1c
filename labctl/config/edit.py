"""Edit a spec file the way a person would: add packages to its `extras:` list and leave
every other line, comment, blank line and line ending as it was. Pure: text in, text out.

Where the list is is found from the YAML parser's own marks (a flow list over several
lines, an anchored list, a list that is an alias of another key's), and the new text is
read back: a layout it cannot edit in place is a LabError saying what to edit by hand,
never a changed meaning."""

from __future__ import annotations

import re

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labctl.config import validators, yamlfile
from labctl.config.lab import Lab
from labctl.config.safewrite import write_atomic
from labctl.config.spec import ImageSpec
from labctl.errors import LabError

_STR = "tag:yaml.org,2002:str"
_ALIAS = re.compile(r"([ \t]*:[ \t]*)(\*[^\s,\[\]{}]+)")


def add_extras(doc: yamlfile.Document, text: str, packages: list[str],
               inherited: list[str]) -> str:
    """``text`` (the spec file ``doc`` was read from, line endings as in the file) with
    ``packages`` appended to its extras. A spec without its own `extras:` gets one, holding
    the ``inherited`` extras of the spec it extends first (a child's list replaces its
    parent's)."""
    items = doc.data.get("extras")
    if "extras" in doc.data and items is not None and not isinstance(items, list):
        raise LabError("extras: is not a list", id="spec.extras-not-list", file=str(doc.path),
                       fix="write extras: as a list of requirements")
    current = list(items or []) if "extras" in doc.data else list(inherited)
    want = [*current, *packages]
    nl = "\r\n" if "\r\n" in text else "\n"
    key, value = _extras_node(doc, text)
    if key is None or value is None:  # none of its own (perhaps one from a `<<:` merge)
        tail = nl if text and not text.endswith(("\n", "\r")) else ""
        new = text + tail + "extras:" + nl + "".join(f"  - {_item(p)}{nl}" for p in want)
    elif value.start_mark.index < key.end_mark.index:  # `extras: *other`: a list of its own
        alias = _ALIAS.match(text, key.end_mark.index)
        if alias is None:
            raise _by_hand(doc, packages, "its value is an alias labctl cannot find")
        new = text[:alias.start(2)] + _flow(want) + text[alias.end(2):]
    elif isinstance(value, ScalarNode):  # `extras:`, `extras: ~`, `extras: null`
        start, end = value.start_mark.index, value.end_mark.index
        gap = " " if start == end else ""
        new = text[:start] + gap + _flow(want) + text[end:]
    elif isinstance(value, SequenceNode) and value.flow_style:  # [a, b] over any lines
        if value.value:
            at = value.value[-1].end_mark.index
            new = text[:at] + ", " + ", ".join(_item(p) for p in packages) + text[at:]
        else:
            at = text.find("[", value.start_mark.index) + 1
            new = text[:at] + ", ".join(_item(p) for p in packages) + text[at:]
    elif isinstance(value, SequenceNode) and value.value:  # a block list: after its last item
        last = value.value[-1]
        start = text.rfind("\n", 0, last.start_mark.index) + 1
        dash = re.fullmatch(r"([ \t]*)-[ \t]+", text[start:last.start_mark.index])
        if dash is None:
            raise _by_hand(doc, packages, "its last item is not on a `- ` line")
        at = last.end_mark.index
        if not text[:at].endswith("\n"):  # else a block scalar item ended with its line
            end = text.find("\n", at)
            at = len(text) if end < 0 else end + 1
        head = text[:at] if text[:at].endswith("\n") or not text[:at] else text[:at] + nl
        new = head + "".join(f"{dash[1]}- {_item(p)}{nl}" for p in packages) + text[at:]
    else:
        raise _by_hand(doc, packages, "its layout is not one labctl edits")
    _check(doc, new, want, packages)
    return new


def _extras_node(doc: yamlfile.Document, text: str) -> tuple[Node | None, Node | None]:
    """The key and value nodes of the file's own top-level `extras:` (not a merged one)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError:
        raise _by_hand(doc, [], "it does not read as YAML") from None
    finally:
        loader.dispose()
    if not isinstance(root, MappingNode):
        return None, None
    for k, v in root.value:
        if isinstance(k, ScalarNode) and k.tag == _STR and k.value == "extras":
            return k, v
    return None, None


def _check(doc: yamlfile.Document, new: str, want: list[str], packages: list[str]) -> None:
    """The edited text must mean the file with only its extras changed."""
    expected = {**doc.data, "extras": want}
    try:
        got = yamlfile.parse(doc.path, new).data
    except LabError:
        got = None
    if got != expected:
        raise _by_hand(doc, packages, "an edit in place would change more than extras:")


def _by_hand(doc: yamlfile.Document, packages: list[str], why: str) -> LabError:
    what = ", ".join(packages) or "the packages"
    return LabError(f"cannot add to extras: in place: {why}",
                    id="spec.extras-not-editable", file=str(doc.path),
                    fix=f"add {what} to extras: by hand (a plain list, e.g. extras: [{what}])")


def _flow(reqs: list[str]) -> str:
    return "[" + ", ".join(_item(p) for p in reqs) + "]"


def _item(req: str) -> str:
    """A requirement as a YAML scalar: quoted when YAML would read it otherwise."""
    plain = re.fullmatch(r"[A-Za-z0-9_.-]+([<>=!~]=?[A-Za-z0-9_.*+!-]+)?", req)
    return req if plain else "'" + req.replace("'", "''") + "'"


def check_packages(packages: tuple[str, ...]) -> None:
    """Each package a requirement pip reads, or a LabError naming it."""
    for p in packages:
        try:
            validators.requirement(p)
        except ValueError as e:
            raise LabError(f"{p}: {e}", id="spec.bad-requirement",
                           fix="name packages as pip does, e.g. seaborn==0.13.2") from None


def add_to_spec(lab: Lab, name: str, packages: tuple[str, ...]) -> tuple[ImageSpec, bytes]:
    """images/NAME.yaml with ``packages`` added to its extras (comments kept): the spec as
    it is now, and the file's bytes before, for the caller to put back. The file must say
    what was meant, or it goes back as it was."""
    spec = lab.spec(name)
    path = lab.images_dir / f"{name}.yaml"
    doc = yamlfile.read(path)
    raw = path.read_bytes()
    new_text = add_extras(doc, raw.decode("utf-8"),  # CRLF line endings stay CRLF
                          list(packages), [] if "extras" in doc.data else list(spec.extras))
    write_atomic(path, new_text)  # a link planted at the spec is replaced, not followed
    try:
        after = lab.spec(name)
        if after.extras != [*spec.extras, *packages]:  # not an assert: -O would drop it
            raise LabError(f"the edit would make extras: {after.extras}",
                           id="spec.extras-not-editable",
                           file=str(path), fix=f"add {', '.join(packages)} to extras: by hand")
    except LabError:
        write_atomic(path, raw)
        raise
    return after, raw
