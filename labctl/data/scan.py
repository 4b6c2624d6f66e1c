"""`labctl data scan`: what the notebooks and scripts of a folder download. Two ways of
finding it: each catalogue entry's `uses` patterns (searched in code cells, .py and .md
files), and the download calls themselves, read from the code's syntax tree: d2l's
DATA_HUB and download()/download_extract(), torchvision datasets (download=True) and
pretrained weights, fastai's untar_data()/download_url() and pretrained learners,
Ultralytics weights, and Hugging Face repositories. A call no catalogue entry covers is
reported with a skeleton entry for the lab's datasets.yaml.

The folder is the learner's, its files anyone's: a file that cannot be read or parsed is
skipped with the reason, never an exception."""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labctl.data.catalogue import Catalogue, Entry

SUFFIXES = (".ipynb", ".py", ".md")
MAX_FILE = 5 << 20  # a script or a page this large is not one a book ships
MAX_NOTEBOOK = 64 << 20  # a notebook's outputs (images) can be large; its code is not
D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"  # d2l.DATA_URL

# torchvision.datasets classes that take download=True (the usual ones; any other name
# under a `datasets.` prefix counts too)
TV_DATASETS = frozenset({
    "CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST", "SVHN",
    "STL10", "USPS", "SEMEION", "Omniglot", "Caltech101", "Caltech256", "CelebA",
    "Flowers102", "Food101", "OxfordIIITPet", "StanfordCars", "FGVCAircraft", "DTD",
    "EuroSAT", "GTSRB", "PCAM", "Places365", "VOCSegmentation", "VOCDetection", "SBDataset",
    "Country211", "RenderedSST2", "CLEVRClassification", "FER2013", "INaturalist",
    "LFWPeople", "LFWPairs", "PhotoTour", "SBU", "WIDERFace", "Kitti", "Kinetics", "HMDB51",
    "UCF101", "Imagenette", "MovingMNIST", "CocoDetection", "CocoCaptions"})
# torchvision.models builders (their names) whose weights come from download.pytorch.org
TV_MODEL = re.compile(
    r"(alexnet|vgg\d+(_bn)?|resnet\d+|resnext\d+_\w+|wide_resnet\d+_\d|densenet\d+"
    r"|squeezenet1_[01]|inception_v3|googlenet|shufflenet_v2_\w+|mobilenet_v[23]\w*"
    r"|mnasnet\d_\d+|efficientnet_\w+|regnet_\w+|convnext_\w+|vit_\w+|swin_\w+|maxvit_t"
    r"|(fcn|deeplabv3|lraspp)_\w+|(fasterrcnn|maskrcnn|keypointrcnn|retinanet|fcos|ssd"
    r"|ssdlite)\w*|r3d_18|mc3_18|r2plus1d_18|s3d|mvit_\w+|raft_\w+)")
FASTAI_LEARNERS = frozenset({"vision_learner", "cnn_learner", "unet_learner"})
FASTAI_TEXT_LEARNERS = frozenset({"text_classifier_learner", "language_model_learner"})
ULTRALYTICS_MODELS = frozenset({"YOLO", "RTDETR", "SAM", "FastSAM", "NAS", "YOLOWorld",
                                "YOLOE"})
D2L_CALLS = frozenset({"d2l.download", "d2l.download_extract", "download",
                       "download_extract"})
HF_CALLS = frozenset({"hf_hub_download", "snapshot_download"})
_HEX40 = re.compile(r"[0-9a-f]{40}")
_MD_FENCE = re.compile(r"^(```+|~~~+)\s*(.*)$")
_TAB = re.compile(r"^\s*#@tab\s+(.*)$")
_YOLO_CLI = re.compile(r"\bmodel=([\w.-]+\.pt)\b")  # `yolo predict model=yolo11n.pt`
# Only for code that does not parse (a cell with an IPython syntax labctl does not strip):
# the same calls as single-line patterns.
_FALLBACK = [
    ("d2l", re.compile(r"DATA_HUB\[\s*['\"]([^'\"]+)['\"]\s*\]\s*=")),
    ("d2l", re.compile(r"\bd2l\.download(?:_extract)?\(\s*['\"]([^'\"]+)['\"]")),
    ("fastai", re.compile(r"\buntar_data\(\s*URLs\.(\w+)")),
    ("ultralytics-asset", re.compile(
        r"\b(?:YOLO|RTDETR|SAM)\(\s*['\"]([^'\"]+\.pt)['\"]")),
    ("ultralytics-asset", _YOLO_CLI),
    ("huggingface", re.compile(r"\bfrom_pretrained\(\s*['\"]([\w.-]+/[\w.-]+)['\"]")),
]
# A chunk of code without any of these words holds no call the scan knows: its syntax
# tree is not walked (most cells of a book).
_TRIGGER = re.compile(r"DATA_HUB|download|pretrained|weights|untar_data|_learner|YOLO|RTDETR"
                      r"|SAM|NAS|pipeline|load_dataset|data\s*=|model=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for one terminal line: control characters (escape sequences, new
    lines) shown as \\xNN, long text cut."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Call:
    """One download call found in a file."""

    kind: str  # d2l, torchvision-dataset, torchvision-weights, fastai, ultralytics-asset,
    # ultralytics-dataset, url, huggingface
    key: str  # what the library names it: the DATA_HUB key, the class, the model, the URL
    code: str  # the call, as written (one line, cut)
    file: Path  # relative to the scanned folder
    line: int  # in the file, or in the cell for a notebook
    cell: int | None = None  # a notebook's cell (1-based, counting every cell)
    url: str = ""  # what it downloads, where the code says
    sha1: str = ""  # d2l: the DATA_HUB definition's
    entry: str | None = None  # the catalogue entry that covers it

    @property
    def where(self) -> str:
        cell = f"cell {self.cell}, " if self.cell is not None else ""
        return f"{self.file}: {cell}line {self.line}"


@dataclass(frozen=True)
class Skipped:
    file: Path
    reason: str


@dataclass
class Report:
    used: dict[str, list[Path]] = field(default_factory=dict)  # entry -> files (sorted)
    calls: list[Call] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def unknown(self) -> list[Call]:
        """The calls no catalogue entry covers (Hugging Face repositories aside), first
        place of each."""
        seen: dict[tuple[str, str], Call] = {}
        for c in self.calls:
            if c.entry is None and c.kind != "huggingface":
                seen.setdefault((c.kind, c.key), c)
        return list(seen.values())

    @property
    def hf_repos(self) -> dict[str, list[Call]]:
        out: dict[str, list[Call]] = {}
        for c in self.calls:
            if c.kind == "huggingface":
                out.setdefault(c.key, []).append(c)
        return out


class Unreadable(Exception):
    """Why a file is skipped (its message)."""


# --- reading files -----------------------------------------------------------------------


def _read(path: Path) -> str:
    limit = MAX_NOTEBOOK if path.suffix == ".ipynb" else MAX_FILE
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise Unreadable(f"cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise Unreadable(f"larger than {limit >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable(f"is not UTF-8 text (byte {e.start})") from None


def _cell_source(cell: object, n: int) -> tuple[str, str]:
    """(cell type, source) of a notebook cell, or why it is not one."""
    if not isinstance(cell, dict):
        raise Unreadable(f"cell {n} is not an object")
    kind = cell.get("cell_type", "code")
    src = cell.get("source", cell.get("input", ""))  # "input": nbformat 3
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        src = "".join(src)
    if not isinstance(kind, str):
        raise Unreadable(f"cell {n}'s cell_type is not text")
    if not isinstance(src, str):
        raise Unreadable(f"cell {n}'s source is not text")
    return kind, src


def _notebook(text: str) -> list[tuple[int, str]]:
    """(cell number, code) of each code cell."""
    try:
        nb = json.loads(text)
    except RecursionError:
        raise Unreadable("is not a notebook: its JSON nests too deeply") from None
    except ValueError as e:  # JSONDecodeError, or an integer too long to convert
        raise Unreadable(f"is not a notebook: not JSON ({printable(str(e), 80)})") from None
    if not isinstance(nb, dict):
        raise Unreadable("is not a notebook: not a JSON object")
    if "cells" in nb:
        cells = nb["cells"]
    else:  # nbformat 3: cells inside worksheets
        sheets = nb.get("worksheets", [])
        if not isinstance(sheets, list) or not all(isinstance(w, dict) for w in sheets):
            raise Unreadable("is not a notebook: 'worksheets' is not a list of objects")
        cells = [c for w in sheets for c in (w.get("cells") or [])]
    if not isinstance(cells, list):
        raise Unreadable("is not a notebook: 'cells' is not a list")
    out = []
    for n, cell in enumerate(cells, 1):
        kind, src = _cell_source(cell, n)
        if kind == "code":
            out.append((n, src))
    return out


def _markdown_code(text: str) -> Iterator[tuple[int, str]]:
    """(first line, code) of each fenced block of a page; d2l's sources: only the blocks
    of the PyTorch and TensorFlow tabs (a block without `#@tab` is MXNet's)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _MD_FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2)
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].startswith(fence):
            i += 1
        block = lines[start:i]
        i += 1
        if ".input" in info:  # a d2l source block
            tab = next((t for t in (_TAB.match(b) for b in block[:3]) if t), None)
            tabs = tab.group(1) if tab else "mxnet"
            if not re.search(r"\b(pytorch|tensorflow|all)\b", tabs):
                continue
        elif info and not re.match(r"(py|python|ipython|\{\.?python)", info):
            continue
        yield start + 1, "\n".join(block)


# --- reading code ------------------------------------------------------------------------


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    return ".".join(reversed(parts))


def _const(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    return call.args[pos] if len(call.args) > pos else _kw(call, name)


def _str(node: ast.AST | None) -> str | None:
    v = _const(node)
    return v if isinstance(v, str) else None


def _d2l_url(node: ast.AST) -> str:
    """A DATA_HUB definition's URL: d2l.DATA_URL + 'file', or a literal."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        tail = _str(node.right)
        if tail is not None and _dotted(node.left).endswith("DATA_URL"):
            return D2L_DATA_URL + tail
    return _str(node) or ""


def _calls_in(tree: ast.AST) -> Iterator[tuple[int, str, str, str, str]]:
    """(line, kind, key, url, sha1) of each download in a syntax tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            yield from _data_hub(node)
        elif isinstance(node, ast.Call) and (found := _download(node)) is not None:
            yield found


def _data_hub(node: ast.Assign) -> Iterator[tuple[int, str, str, str, str]]:
    """d2l's `DATA_HUB['key'] = (url, sha1)` definitions: a book's own datasets are
    declared, not called, so an assignment is a download too."""
    for t in node.targets:
        if (isinstance(t, ast.Subscript) and _dotted(t.value).endswith("DATA_HUB")
                and (key := _str(t.slice)) is not None):
            url, sha1 = "", ""
            if isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
                url = _d2l_url(node.value.elts[0])
                sha1 = _str(node.value.elts[1]) or ""
                sha1 = sha1 if _HEX40.fullmatch(sha1) else ""
            yield node.lineno, "d2l", key, url, sha1


def _download(node: ast.Call) -> tuple[int, str, str, str, str] | None:
    """The download one call makes, or None. The first rule its name matches decides,
    even when the call then turns out to download nothing (the order is the contract)."""
    name = _dotted(node.func)
    last = name.rsplit(".", 1)[-1]
    first = _arg(node, 0, "")
    if name in D2L_CALLS:
        key = _str(first) or _str(_kw(node, "name"))
        if key is not None and not re.search(r"[/:\\]", key):
            return node.lineno, "d2l", key, "", ""
    elif _const(_kw(node, "download")) is True and (
            last in TV_DATASETS or ".datasets." in f".{name}"):
        return node.lineno, "torchvision-dataset", last, "", ""
    elif TV_MODEL.fullmatch(last) and _pretrained(node):
        return node.lineno, "torchvision-weights", last, "", ""
    elif last in FASTAI_LEARNERS and _const(_kw(node, "pretrained")) is not False:
        arch = _arg(node, 1, "arch")
        if arch is not None and TV_MODEL.fullmatch(_dotted(arch).rsplit(".", 1)[-1]):
            return node.lineno, "torchvision-weights", _dotted(arch).rsplit(".", 1)[-1], "", ""
    elif last in FASTAI_TEXT_LEARNERS and _const(_kw(node, "pretrained")) is not False:
        arch = _arg(node, 1, "arch")
        if arch is not None and _dotted(arch).endswith("AWD_LSTM"):
            return node.lineno, "fastai", "WT103_FWD", "", ""
    elif last in ("untar_data", "download_data", "download_url"):
        src = _arg(node, 0, "url")
        if src is None:
            return None
        dotted = _dotted(src)
        if dotted.startswith("URLs."):
            return node.lineno, "fastai", dotted.split(".", 1)[1], "", ""
        if (url := _str(src)) is not None:
            return node.lineno, "url", url, url, ""
    elif last in ULTRALYTICS_MODELS:
        weights = _str(_arg(node, 0, "model"))
        if weights and weights.endswith(".pt") and "/" not in weights:
            return node.lineno, "ultralytics-asset", weights, "", ""
    elif last in ("train", "val") and (data := _str(_kw(node, "data"))):
        if data.endswith(".yaml") and "/" not in data:
            return node.lineno, "ultralytics-dataset", data, "", ""
    elif last == "from_pretrained" or last == "load_dataset" or (
            last == "pipeline" and _kw(node, "model") is not None):
        repo = _str(_kw(node, "model")) if last == "pipeline" else (
            _str(first) or _str(_kw(node, "pretrained_model_name_or_path"))
            or _str(_kw(node, "path")))
        if repo and _hub_repo(repo):
            return node.lineno, "huggingface", repo, "", ""
    elif last in HF_CALLS:
        repo = _str(_arg(node, 0, "repo_id"))
        if repo and _hub_repo(repo):
            return node.lineno, "huggingface", repo, "", ""
    return None


def _pretrained(call: ast.Call) -> bool:
    """A torchvision builder asked for weights: pretrained=True, or weights= anything but
    None / False."""
    weights = _kw(call, "weights")
    return _const(_kw(call, "pretrained")) is True or (
        weights is not None and not (isinstance(weights, ast.Constant)
                                     and weights.value in (None, False)))


def _hub_repo(name: str) -> bool:
    """A Hub repository id (ORG/NAME, or a legacy NAME), not a local path."""
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and not name.startswith(".") \
        and not name.endswith((".pt", ".pth", ".bin", ".json"))


def _strip_ipython(code: str) -> str:
    """IPython lines (%magic, !shell, ?help) as blank lines: the rest parses as Python
    and keeps its line numbers."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!", "?")) else ln
                     for ln in code.split("\n"))


def _code_calls(code: str) -> Iterator[tuple[int, str, str, str, str]]:
    if not _TRIGGER.search(code):
        return
    lines = code.split("\n")
    try:
        tree = ast.parse(_strip_ipython(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    if tree is not None:
        try:
            found = list(_calls_in(tree))
        except RecursionError:
            found = None
        if found is not None:
            yield from found
            # shell lines (`!yolo predict model=yolo11n.pt`) are not Python
            for n, ln in enumerate(lines, 1):
                if ln.lstrip().startswith("!"):
                    for m in _YOLO_CLI.finditer(ln):
                        yield n, "ultralytics-asset", m.group(1), "", ""
            return
    for n, ln in enumerate(lines, 1):
        for kind, pat in _FALLBACK:
            for m in pat.finditer(ln):
                yield n, kind, m.group(1), "", ""


# --- matching calls with the catalogue ---------------------------------------------------


def _covers(entry: Entry, kind: str, key: str, url: str) -> bool:
    lib = entry.library
    if url and any(url in f.urls for f in entry.files):
        return True
    if kind == "url":
        return any(PurePosixPath(u).name == PurePosixPath(key).name and u.endswith(key)
                   for f in entry.files for u in f.urls)
    if not lib.key:
        return False
    if kind == "d2l":
        return lib.kind in ("d2l", "none") and lib.key == key
    if kind == "torchvision-weights":
        return lib.kind == "torchvision-weights" and \
            lib.key.lower().startswith(key.lower() + "_weights.")
    if kind == "torchvision-dataset":
        return lib.kind in ("torchvision-dataset", "none") and lib.key == key
    if kind == "fastai":
        return lib.kind == "fastai" and lib.key.lower() == key.lower()
    if kind in ("ultralytics-asset", "ultralytics-dataset"):
        return lib.kind == kind and lib.key == key
    return False


def _entry_for(cat: Catalogue, kind: str, key: str, url: str) -> str | None:
    if kind == "huggingface":
        return None
    return next((n for n, e in cat.entries.items() if _covers(e, kind, key, url)), None)


def skeleton(call: Call) -> str:
    """A datasets.yaml entry for the lab folder that would cover ``call``: what the code
    says filled in, the rest marked FILL-IN (a d2l DATA_HUB definition fills in all)."""
    k = call.key

    def quoted(text: str, limit: int) -> str:
        return "'" + printable(text, limit).replace("'", "''") + "'"

    def library(kind: str, key: str | None = k) -> str:
        return f"{{kind: {kind}" + (f", key: {quoted(key, 100)}}}" if key else "}")

    name = re.sub(r"[^a-z0-9.-]+", "-", k.lower().removesuffix(".pt").removesuffix(".yaml"))
    name = name.strip("-.")[:40] or "my-download"
    url, check, note = "FILL-IN", "sha256: FILL-IN", ""
    if call.kind == "d2l":
        url = call.url or f"{D2L_DATA_URL}FILL-IN"
        check = f"sha1: {call.sha1 or 'FILL-IN'}"
        lib, vol, to = library("d2l"), "data", PurePosixPath(url).name
        name = f"d2l-{name}"
        note = "" if call.url and call.sha1 else "the URL and sha1 of its DATA_HUB line"
    elif call.kind == "torchvision-dataset":
        lib, vol, to = library("torchvision-dataset"), "data", f"{k}/raw/FILL-IN"
        check = "md5: FILL-IN"
        note = f"one file per item of torchvision.datasets.{printable(k, 60)}.resources"
    elif call.kind == "torchvision-weights":
        lib, vol = library("torchvision-weights", "FILL-IN"), "cache"
        to, url = "torch/hub/checkpoints/FILL-IN.pth", "https://download.pytorch.org/models/" \
            "FILL-IN.pth"
        check = "sha256_prefix: FILL-IN"
        note = (f"the weights enum of torchvision.models.{printable(k, 60)} (key: ENUM.MEMBER,"
                " url; the file name's hex part is the sha256 prefix)")
        name = f"torchvision-{name}"
    elif call.kind == "fastai":
        lib, vol, to = library("fastai"), "cache", "fastai/archive/FILL-IN.tgz"
        check = "size: FILL-IN, md5_first_mib: FILL-IN"
        note = f"URLs.{printable(k, 60)} and its line in fastai/data/download_checks.py"
        name = f"fastai-{name}"
    elif call.kind.startswith("ultralytics"):
        dataset = call.kind == "ultralytics-dataset"
        lib = library(call.kind)
        vol, to = "ultralytics", (f"datasets/{k.removesuffix('.yaml')}.zip" if dataset
                                  else f"weights/{k}")
        if not dataset:
            url = f"https://github.com/ultralytics/assets/releases/download/FILL-IN/{k}"
    else:  # a plain URL
        url, lib, vol = k, library("none", None), "data"
        to = PurePosixPath(k).name or "FILL-IN"

    return "\n".join([
        *([f"  # FILL-IN from {note}"] if note else []),
        f"  {name}:",
        f"    description: {quoted(f'{call.code} ({call.file})', 120)}",
        f"    volume: {vol}",
        f"    library: {lib}",
        "    files:",
        f"      - {{urls: [{quoted(url, 300)}], to: {quoted(to, 200)}, {check}}}"])


# --- the scan ----------------------------------------------------------------------------


def _files(folder: Path, skipped: list[Skipped]) -> Iterator[Path]:
    """The files to read, in sorted order, hidden folders and files left out, links to
    folders not followed; a folder that cannot be listed is reported. A stack, not
    recursion: a folder tree of any depth."""
    stack = [folder]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        except OSError as e:
            skipped.append(Skipped(here.relative_to(folder),
                                   f"folder cannot be read ({e.strerror or e})"))
            continue
        for name, is_dir in entries:
            if name.startswith("."):
                continue
            if not is_dir and name.endswith(SUFFIXES):
                yield here / name
        stack.extend(here / name for name, is_dir in reversed(entries)
                     if is_dir and not name.startswith("."))


def _record_calls(report: Report, cat: Catalogue, rel: Path,
                  chunks: list[tuple[int | None, int, str]],
                  entry_of: dict[tuple[str, str, str], str | None]) -> None:
    """The download calls of one file's code chunks (cell, first line, code) into
    ``report``, each with the catalogue entry that covers it."""
    for cell, first, src in chunks:
        for line, kind, key, url, sha1 in _code_calls(src):
            where = (kind, key, url)
            if where not in entry_of:
                entry_of[where] = _entry_for(cat, kind, key, url)
            src_lines = src.split("\n")
            shown = src_lines[line - 1].strip() if 0 < line <= len(src_lines) else key
            covered = entry_of[where]
            report.calls.append(Call(
                kind=kind, key=key, code=printable(shown, 120), file=rel,
                line=line + first - 1, cell=cell, url=url, sha1=sha1, entry=covered))
            if covered and (not report.used.get(covered) or report.used[covered][-1] != rel):
                report.used.setdefault(covered, []).append(rel)


def survey(folder: Path, cat: Catalogue) -> Report:
    """Everything the scan finds in ``folder``: entries used, download calls, files
    skipped and why."""
    report = Report()
    patterns = {name: [re.compile(p) for p in e.uses] for name, e in cat.entries.items()}
    entry_of: dict[tuple[str, str, str], str | None] = {}
    for path in _files(folder, report.skipped):
        rel = path.relative_to(folder)
        try:
            if not path.is_file():  # a link to nothing, a fifo
                continue
            text = _read(path)
            if path.suffix == ".ipynb":
                chunks = [(cell, 1, src) for cell, src in _notebook(text)]
                code = "\n".join(src for _, _, src in chunks)
            elif path.suffix == ".md":
                chunks = [(None, first, src) for first, src in _markdown_code(text)]
                code = text
            else:
                chunks, code = [(None, 1, text)], text
        except Unreadable as e:
            report.skipped.append(Skipped(rel, str(e)))
            continue
        except OSError as e:
            report.skipped.append(Skipped(rel, f"cannot be read ({e.strerror or e})"))
            continue
        for name, pats in patterns.items():
            if any(p.search(code) for p in pats):
                report.used.setdefault(name, []).append(rel)
        try:
            _record_calls(report, cat, rel, chunks, entry_of)
        except Exception as e:  # noqa: BLE001 - the last guard: one file, never the scan
            report.skipped.append(Skipped(rel, f"could not be read as code ({type(e).__name__}:"
                                          f" {printable(str(e), 80)})"))
    for files in report.used.values():
        files.sort()
    return report


def scan(folder: Path, cat: Catalogue) -> dict[str, list[Path]]:
    """Entry name -> the files (sorted) that use it."""
    return survey(folder, cat).used
