"""Runs at every Python start in a lab (labctl.pth in the venv): the book-compatibility
shims the spec carries, and the offline hint that turns a failed download of a known
dataset into the `labctl data` command that fixes it. Cheap on purpose: nothing heavy is
imported here; shims wait for the module they patch to be imported."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path

LIB = Path("/opt/labctl/lib")
COMPAT = Path("/opt/labctl/compat.json")  # the shims of this image's spec (its compat:)
DATASETS = LIB / "datasets.json"  # labctl's catalogue (tables/datasets.yaml)
_URL = re.compile(r"https?://[^\s'\"<>)]+")


# --- book compatibility -----------------------------------------------------------------


def _plot_partial_dependence(module: types.ModuleType) -> None:
    """fastbook 09: sklearn.inspection.plot_partial_dependence, removed in scikit-learn 1.2;
    PartialDependenceDisplay.from_estimator draws the same plot. The book's features
    (YearMade, ProductSize's codes) are integer columns, which scikit-learn 1.9 refuses
    ("convert numerical features to floating point dtypes"): they go in as floats, the
    values the older releases used."""
    if hasattr(module, "plot_partial_dependence"):
        return

    def plot_partial_dependence(estimator, X, features, **kwargs):  # noqa: ANN001, ANN202, N803
        return module.PartialDependenceDisplay.from_estimator(
            estimator, _float_features(X, features), features, **kwargs)

    module.plot_partial_dependence = plot_partial_dependence


def _float_features(X, features):  # noqa: ANN001, ANN202, N803
    """X with the integer columns among ``features`` (names, indices, or pairs) as floats."""
    features = [features] if isinstance(features, (str, int)) else features
    names = [f for item in features for f in (item if isinstance(item, (list, tuple))
                                               else [item])]
    if hasattr(X, "columns"):  # a DataFrame
        cols = [X.columns[f] if isinstance(f, int) else f for f in names]
        ints = {c: "float64" for c in cols if c in X.columns and X[c].dtype.kind in "iu"}
        return X.astype(ints) if ints else X
    dtype = getattr(X, "dtype", None)
    return X.astype("float64") if dtype is not None and dtype.kind in "iu" else X


def _gen_doc_stub(name: str) -> types.ModuleType:
    """fastbook 17: `from fastai.gen_doc.nbdoc import *` (fastai 2 has no gen_doc): `doc`
    prints an object's signature and docstring, as the book uses it."""
    mod = types.ModuleType(name)
    mod.__path__ = []  # type: ignore[attr-defined]

    def doc(obj: object) -> None:
        import inspect

        try:
            sig = str(inspect.signature(obj))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            sig = ""
        print(f"{getattr(obj, '__qualname__', obj)}{sig}\n\n{inspect.getdoc(obj) or ''}")

    mod.doc = mod.show_doc = doc  # type: ignore[attr-defined]
    mod.__all__ = ["doc", "show_doc"]  # type: ignore[attr-defined]
    return mod


def _yolov5_hub_offline(module: types.ModuleType) -> None:
    """YOLOv5 (the yolov5 7.0 package) asks the Hugging Face Hub about every weights
    argument before it looks on disk: a local best.pt too. Offline that is an uncaught
    ConnectionError. A path that exists, or no answer from the Hub, means "not a Hub
    model", as the package means None."""
    ask = module.attempt_download_from_hub

    def attempt_download_from_hub(repo_id, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not repo_id or Path(str(repo_id)).exists():
            return None
        try:
            return ask(repo_id, *args, **kwargs)
        except OSError:  # requests' ConnectionError and huggingface_hub's offline mode
            return None

    module.attempt_download_from_hub = attempt_download_from_hub


# shim -> (the module it patches right after it is imported, the patch)
PATCHES: dict[str, tuple[str, Callable[[types.ModuleType], None]]] = {
    "plot_partial_dependence": ("sklearn.inspection", _plot_partial_dependence),
    "yolov5_hub_offline": ("yolov5.utils.downloads", _yolov5_hub_offline),
}
# shim -> (the modules it provides where the library has none, the factory)
PROVIDES: dict[str, tuple[tuple[str, ...], Callable[[str], types.ModuleType]]] = {
    "fastai_gen_doc": (("fastai.gen_doc", "fastai.gen_doc.nbdoc"), _gen_doc_stub),
}


class _Patched(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, patch: Callable[[types.ModuleType], None]
                 ) -> None:
        self.inner, self.patch = inner, patch

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self.inner.create_module(spec)

    def exec_module(self, module):  # noqa: ANN001, ANN201
        self.inner.exec_module(module)
        self.patch(module)


class _Ready(importlib.abc.Loader):
    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self.module

    def exec_module(self, module):  # noqa: ANN001, ANN201
        pass


class _Hooks(importlib.abc.MetaPathFinder):
    """Patches a module right after it is imported; provides a module the library lacks.
    The module itself is found as the standard finder would (PathFinder, same path)."""

    def __init__(self, patches: dict[str, Callable[[types.ModuleType], None]],
                 provides: dict[str, Callable[[str], types.ModuleType]]) -> None:
        self.patches, self.provides = patches, provides

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name not in self.patches and name not in self.provides:
            return None
        real = importlib.machinery.PathFinder.find_spec(name, path)
        if name in self.patches and real is not None and real.loader is not None:
            real.loader = _Patched(real.loader, self.patches[name])
            return real
        if real is None and name in self.provides:
            module = self.provides[name](name)
            return importlib.util.spec_from_loader(name, _Ready(module), is_package=True)
        return None


def shims() -> list[str]:
    """The shims this image's spec carries, unless LABCTL_COMPAT=off."""
    if os.environ.get("LABCTL_COMPAT", "").lower() in ("off", "0", "no", "false"):
        return []
    try:
        return list(json.loads(COMPAT.read_text()).get("shims", []))
    except (OSError, ValueError):
        return []


# --- the offline hint ---------------------------------------------------------------------


def _catalogue() -> dict:
    try:
        return json.loads(DATASETS.read_text())
    except (OSError, ValueError):
        return {}


def _seen(exc: BaseException) -> list[str]:
    """URLs and file names in an exception chain: messages and the frames' locals."""
    out: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out += _URL.findall(str(exc))
        tb = exc.__traceback__
        while tb is not None:
            for key, value in tb.tb_frame.f_locals.items():
                if key in ("url", "urls", "fname", "file", "filename", "fpath", "path", "name",
                           "weights", "arch") and isinstance(value, (str, os.PathLike)):
                    out.append(str(value))
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def _downloading(exc: BaseException) -> bool:
    tb, names = exc.__traceback__, []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    text = f"{type(exc).__name__} {exc}".lower()
    return any("download" in n or n in ("urlopen", "untar_data", "safe_download") for n in names) \
        or any(w in text for w in ("urlopen error", "name or service not known", "max retries",
                                   "failed to resolve", "temporary failure in name resolution",
                                   "connection refused", "error downloading"))


def hint(exc: BaseException) -> str | None:
    """What to run when ``exc`` is a failed download: the catalogue entry, `labctl data get`
    and `labctl data import`; None when it is not a download."""
    if not _downloading(exc):
        return None
    things = _seen(exc)
    entries = _catalogue().get("entries", {})
    for name, e in entries.items():
        for f in e["files"]:
            if any(t in f["urls"] or t.endswith("/" + f["name"]) or Path(t).name == f["name"]
                   for t in things):
                return (f"\nlabctl: this needs {name} ({e['description']}), and the download"
                        " failed (offline, or a blocked site?).\n"
                        f"  on the host, in the lab folder:  labctl data get {name}\n"
                        f"  or fetch {f['urls'][0]} another way (a browser, a USB stick, a"
                        f" campus mirror) and run:  labctl data import {name} PATH\n"
                        f"  it then lies where the library looks: the lab's '{e['volume']}'"
                        f" folder, {f['to']}\n")
    urls = [t for t in things if t.startswith(("http://", "https://"))]
    if urls:
        return (f"\nlabctl: a download failed: {urls[0]}\n"
                "  offline? fetch it another way and put it where the code looks for it;"
                " `labctl data list` on the host shows the files labctl knows\n")
    return None


def _excepthook(etype, value, tb):  # noqa: ANN001, ANN202
    sys.__excepthook__(etype, value, tb)
    text = hint(value) if isinstance(value, BaseException) else None
    if text:
        sys.stderr.write(text)


def ipython(shell) -> None:  # noqa: ANN001
    """In a Jupyter kernel: the traceback as usual, then the hint under it."""

    def handler(self, etype, value, tb, tb_offset=None):  # noqa: ANN001, ANN202
        self.showtraceback((etype, value, tb), tb_offset=tb_offset)
        text = hint(value)
        if text:
            print(text, file=sys.stderr)

    shell.set_custom_exc((Exception,), handler)


def start() -> None:
    wanted = shims()
    patches = {PATCHES[s][0]: PATCHES[s][1] for s in wanted if s in PATCHES}
    provides = {n: PROVIDES[s][1] for s in wanted if s in PROVIDES for n in PROVIDES[s][0]}
    if patches or provides:
        sys.meta_path.insert(0, _Hooks(patches, provides))
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
