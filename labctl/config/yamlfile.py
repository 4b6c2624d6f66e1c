"""Read a YAML file the way labctl's errors need it: a mapping, its key positions taken
from the parser's own node marks (so an error names the line without scanning the text
again), and the bad input a careless or hostile file brings refused with a clear message:
another encoding, duplicate keys, a size or a nesting no real spec reaches."""

from __future__ import annotations

import codecs
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labctl.errors import LabError

# The shipped specs are under 2 KB and the largest lock-free spec seen in the wild under
# 20 KB: 256 KB is no real spec, and keeps a pathological file from taking minutes.
MAX_BYTES = 256 * 1024
# Values after alias expansion (anchors can multiply a small file into billions of nodes).
MAX_NODES = 50_000
Key = tuple[Hashable, ...]


@dataclass
class Document:
    """A YAML mapping and the line (1-based) where each key path starts."""

    path: Path
    data: dict[str, Any]
    lines: dict[Key, int] = field(default_factory=dict)

    def line(self, key: Key) -> int | None:
        """The line of ``key``, or of its nearest parent that has one."""
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                return self.lines[key[:n]]
        return None

    def has(self, key: Key) -> bool:
        return key in self.lines


def _decode(path: Path, raw: bytes) -> str:
    for bom, name in ((codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
                      (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32")):
        if raw.startswith(bom) and not raw.startswith(codecs.BOM_UTF8):
            raise LabError(f"is saved as {name}; labctl reads UTF-8",
                           id="yaml.not-utf8", file=str(path),
                           fix="save it as UTF-8 (in VS Code: the encoding in the status bar"
                           ", 'Save with Encoding', UTF-8)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise LabError(f"is not UTF-8 text (byte {e.start}, line {line})",
                       id="yaml.not-utf8", file=str(path),
                       fix="save it as UTF-8; `iconv -f GBK -t UTF-8` converts a GBK file"
                       ) from None


class _Builder:
    """Python values from composed nodes, recording key lines, refusing duplicate keys."""

    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path, self.loader = path, loader
        self.lines: dict[Key, int] = {}
        self.nodes = 0
        self.merged: dict[int, int] = {}  # id of a mapping node -> its merged pairs

    def build(self, node: Node, key: Key = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise LabError(f"holds more than {MAX_NODES} values (after expanding anchors)",
                           id="yaml.too-many-values",
                           file=str(self.path), fix="no real spec is this large: shorten it")
        if isinstance(node, MappingNode):
            # `<<: *anchor` merge keys: the merged pairs come first, and the mapping's own
            # keys may override them (the node is flattened in place, once: an alias of it
            # finds the count of merged pairs here).
            if id(node) not in self.merged:
                own = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
                self.loader.flatten_mapping(node)
                self.merged[id(node)] = len(node.value) - own
            out: dict[Any, Any] = {}
            seen: dict[Any, int] = {}
            for i, (knode, vnode) in enumerate(node.value):
                k = self.construct(knode)
                line = knode.start_mark.line + 1
                if not isinstance(k, Hashable):
                    raise LabError(f"line {line}: a key must be a name, not a list or mapping",
                                   id="yaml.key-not-scalar",
                                   file=str(self.path), fix="write `name: value` pairs")
                if i >= self.merged[id(node)]:  # a merged pair may be overridden
                    if k in seen:
                        raise LabError(
                            f"line {line}: key {k!r} appears twice (first on line {seen[k]})",
                            id="yaml.duplicate-key", file=str(self.path),
                            fix="keep one of them: YAML would silently use the last one")
                    seen[k] = line
                self.lines[(*key, k)] = line
                out[k] = self.build(vnode, (*key, k))
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*key, i)] = item.start_mark.line + 1
                items.append(self.build(item, (*key, i)))
            return items
        if not isinstance(node, ScalarNode):
            raise LabError(f"line {node.start_mark.line + 1}: not a YAML value labctl reads",
                           id="yaml.unsupported-value",
                           file=str(self.path), fix="write plain keys, lists and values")
        return self.construct(node)

    def construct(self, node: Node) -> Any:
        """A key or scalar's value; one Python cannot make (an integer of more than 4300
        digits, the 31st of February as a date) is the file's error on that line."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as e:
            raise LabError(f"line {node.start_mark.line + 1}: a value labctl cannot read"
                           f" ({str(e)[:120]})", id="yaml.unreadable-value", file=str(self.path),
                           fix="quote it to make it text, or shorten it") from None


def read(path: Path, *, optional: bool = False) -> Document:
    """The YAML mapping in ``path`` with its key lines; an empty mapping for an empty file
    (or a missing one when ``optional``). Every problem is a LabError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise LabError(f"is {size // 1024} KB; labctl reads at most {MAX_BYTES // 1024} KB",
                           id="yaml.too-large",
                           file=str(path), fix="no real spec or settings file is this large:"
                           " is it the right file?")
        raw = path.read_bytes()
    except FileNotFoundError:
        if optional:
            return Document(path, {})
        raise LabError("file not found", id="yaml.not-found", file=str(path)) from None
    except IsADirectoryError:
        raise LabError("is a folder, not a YAML file",
                       id="yaml.is-folder", file=str(path)) from None
    return parse(path, _decode(path, raw))


def parse(path: Path, text: str) -> Document:
    """``text`` (of the file ``path``) as read() reads it."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters already
        node = loader.get_single_node()
        builder = _Builder(path, loader)
        data = builder.build(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise LabError(f"not valid YAML{where}: {problem}",
                       id="yaml.invalid-syntax", file=str(path),
                       fix="check indentation and quoting on that line") from None
    except RecursionError:
        raise LabError("is nested too deeply to be a spec", id="yaml.too-deep", file=str(path),
                       fix="no real spec nests more than a few levels") from None
    except (ValueError, OverflowError) as e:  # what construction raises outside a scalar
        raise LabError(f"a value labctl cannot read ({str(e)[:120]})",
                       id="yaml.unreadable-value", file=str(path),
                       fix="quote it to make it text, or shorten it") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return Document(path, {})
    if not isinstance(data, dict):
        raise LabError("must be a mapping of keys to values",
                       id="yaml.not-a-mapping", file=str(path),
                       fix="start with a key, e.g. 'base: debian:bookworm'")
    return Document(path, data, builder.lines)
