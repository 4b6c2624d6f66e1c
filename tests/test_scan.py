"""`labctl data scan`: hostile files are skipped with a reason (never a traceback), the
download calls of the books' code are recognised and matched with the catalogue, unknown
ones come with a datasets.yaml skeleton, and the summary counts bytes."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from conftest import write_lab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.data import catalogue
from labctl.data.scan import skeleton, survey

ROOT = os.geteuid() == 0


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", "data", "scan", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def _nb(*sources: object, kind: str = "code") -> str:
    return json.dumps({"cells": [{"cell_type": kind, "source": s} for s in sources],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


BOOK_PY = '''\
import torchvision
from d2l import torch as d2l
d2l.DATA_HUB['bert.small'] = (d2l.DATA_URL + 'bert.small.torch.zip',
                              'c72329e68a732bef0452e4b96a1c341c8910f81f')
train = torchvision.datasets.CIFAR10(root="../data", train=True,
                                     download=True)
test = torchvision.datasets.FashionMNIST(root="../data", download=True)
net = torchvision.models.vgg19(pretrained=True)
fine = torchvision.models.resnet18(weights="IMAGENET1K_V1")
scratch = torchvision.models.resnet101(weights=None)
path = untar_data(URLs.ML_100k)
learn = vision_learner(dls, resnet34, metrics=error_rate)
learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5)
model = YOLO('yolo11n.pt')
tok = AutoTokenizer.from_pretrained("bert-base-uncased")
clf = pipeline("sentiment-analysis", model="distilbert/distilbert-base-uncased")
f = hf_hub_download(repo_id="ORG/NAME", filename="x.bin")
nltk.download('punkt')
'''


def test_malformed_and_unreadable_files_are_skipped_with_the_reason(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    bad = {
        "cells-not-list.ipynb": b'{"cells": 5}',
        "source-not-text.ipynb": _nb([1, 2]).encode(),
        "cell-not-object.ipynb": b'{"cells": [5]}',
        "deep.ipynb": b"[" * 100_000 + b"]" * 100_000,
        "latin1.ipynb": "{\"cells\": []} caf\xe9".encode("latin-1"),
        "latin1.py": b"# caf\xe9\nx = 1\n",
        "top-list.ipynb": b"[]",
        "huge-int.ipynb": b'{"cells": [], "n": ' + b"9" * 5000 + b"}",
        "evil\x1b[31m.ipynb": b"{",
    }
    for name, data in bad.items():
        (book / name).write_bytes(data)
    locked = book / "locked.ipynb"
    locked.write_text(_nb("d2l.download('hotdog')"))
    locked.chmod(0)
    (book / "good.ipynb").write_text(_nb("x = d2l.load_data_fashion_mnist(256)"))
    (book / "deep.py").write_text("x = " + "(" * 5000 + ")" * 5000 + "\n")
    (book / "chain.py").write_text("x = f" + "()" * 20000 + "\n")
    shut = book / "shut"
    shut.mkdir()
    shut.chmod(0)
    root = write_lab(tmp_path / "lab", {})
    proc = _cli(root, str(book))
    shut.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    if not ROOT:
        assert "skipped shut: folder cannot be read (Permission denied)" in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("skipped ")]
    for name in bad:
        if name != "evil\x1b[31m.ipynb":
            assert sum(f"skipped {name}:" in ln for ln in lines) == 1, (name, proc.stderr)
    assert "skipped deep.ipynb: is not a notebook: its JSON nests too deeply" in lines
    assert "skipped latin1.py: is not UTF-8 text (byte 5)" in lines
    assert "skipped cell-not-object.ipynb: cell 1 is not an object" in lines
    # a file name is printed with its control characters escaped, not sent to the terminal
    assert "\x1b" not in proc.stderr and "skipped evil\\x1b[31m.ipynb:" in proc.stderr
    if not ROOT:  # root reads a mode-0 file; CI runs this as an ordinary user
        assert any(ln.startswith("skipped locked.ipynb: cannot be read (Permission denied)")
                   for ln in lines)
    assert "fashion-mnist" in proc.stdout  # the good notebook is still scanned
    out = json.loads(_cli(root, str(book), "--json").stdout)
    assert {s["file"] for s in out["skipped"]} >= {n for n in bad if "\x1b" not in n}


def test_a_folder_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    cat = catalogue.shipped()
    deep = tmp_path
    for _ in range(300):
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.py").write_text("net = torchvision.models.vgg19(pretrained=True)\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)  # a tree deeper than the stack: a recursive walk fails
    try:
        report = survey(tmp_path, cat)
    finally:
        sys.setrecursionlimit(limit)
    assert report.used["torchvision-vgg19"] == [Path(*["d"] * 300, "bottom.py")]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["cells", "cell_type", "source", "code", "input", "worksheets",
                         "x"]), inner, max_size=4),
    max_leaves=20)
_cell = st.fixed_dictionaries({"cell_type": st.sampled_from(["code", "markdown", 3]),
                               "source": _json | st.lists(st.text(max_size=30))})
_code = st.lists(st.sampled_from([
    "d2l.download(", "'x'", ")", "DATA_HUB[", "] = (", "d2l.DATA_URL + ", "untar_data(",
    "URLs.", "YOLO(", "download=True", "pretrained=True", "from_pretrained(", "(", "[",
    "\n", "%", "!", "\x00", "\xff", "#@tab pytorch", "```{.python .input}", "```",
    "weights=", "vgg19", ".pt'", "model=", ",", "lambda: ", "\\", "'it\\'s\\n\\x1b'",
    "URLs.X_\u00e9", "torchvision.datasets.Q(download=True)", "d2l.download('a\\nb')"]),
    max_size=30).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nb=_json | st.fixed_dictionaries({"cells": st.lists(_cell | _json, max_size=4)}),
       raw=st.binary(max_size=200), code=_code, text=st.text(string.printable, max_size=200))
def test_no_exception_escapes_the_scan(nb, raw, code, text):
    cat = catalogue.shipped()
    with tempfile.TemporaryDirectory() as d:
        book = Path(d)
        (book / "nb.ipynb").write_text(json.dumps(nb))
        (book / "raw.ipynb").write_bytes(raw)
        (book / "raw.py").write_bytes(raw)
        (book / "code.py").write_text(code, errors="surrogateescape")
        (book / "code.ipynb").write_text(_nb(code.splitlines(keepends=True)))
        (book / "page.md").write_text(f"```{{.python .input}}\n#@tab pytorch\n{code}\n```\n"
                                      f"{text}")
        report = survey(book, cat)
        for c in report.unknown:
            yaml.safe_load("entries:\n" + skeleton(c))  # a skeleton is YAML, whatever the code


def test_download_calls_are_recognised_with_their_place(tmp_path):
    book = tmp_path / "book"
    (book / "ch").mkdir(parents=True)
    (book / "ch" / "a.py").write_text(BOOK_PY)
    (book / "nb.ipynb").write_text(json.dumps({"nbformat": 4, "cells": [
        {"cell_type": "markdown", "source": "YOLO('yolov5s.pt') in prose is no call"},
        {"cell_type": "code", "source": ["%matplotlib inline\n",
                                         "!yolo predict model=yolov8n.pt\n",
                                         "x = d2l.download('kaggle_house_train')\n"]},
        {"cell_type": "code", "source": "m = YOLO('yolo11n.pt')\nm.train(data='coco8.yaml')"},
    ]}))
    report = survey(book, catalogue.shipped())
    got = {(c.kind, c.key, c.entry, c.where) for c in report.calls}
    a = Path("ch/a.py")
    assert got == {
        ("d2l", "bert.small", "d2l-bert.small", f"{a}: line 3"),
        ("torchvision-dataset", "CIFAR10", "cifar-10", f"{a}: line 5"),
        ("torchvision-dataset", "FashionMNIST", "fashion-mnist", f"{a}: line 7"),
        ("torchvision-weights", "vgg19", "torchvision-vgg19", f"{a}: line 8"),
        ("torchvision-weights", "resnet18", "torchvision-resnet18", f"{a}: line 9"),
        ("fastai", "ML_100k", "fastai-ml-100k", f"{a}: line 11"),
        ("torchvision-weights", "resnet34", "torchvision-resnet34", f"{a}: line 12"),
        ("fastai", "WT103_FWD", "fastai-wt103-fwd", f"{a}: line 13"),
        ("ultralytics-asset", "yolo11n.pt", "yolo11n", f"{a}: line 14"),
        ("huggingface", "bert-base-uncased", None, f"{a}: line 15"),
        ("huggingface", "distilbert/distilbert-base-uncased", None, f"{a}: line 16"),
        ("huggingface", "ORG/NAME", None, f"{a}: line 17"),
        ("ultralytics-asset", "yolov8n.pt", "yolov8n", "nb.ipynb: cell 2, line 2"),
        ("d2l", "kaggle_house_train", "d2l-kaggle-house-train", "nb.ipynb: cell 2, line 3"),
        ("ultralytics-asset", "yolo11n.pt", "yolo11n", "nb.ipynb: cell 3, line 1"),
        ("ultralytics-dataset", "coco8.yaml", "coco8", "nb.ipynb: cell 3, line 2"),
    }  # resnet101(weights=None) downloads nothing; nltk.download is not d2l's
    assert report.unknown == []
    assert set(report.hf_repos) == {"bert-base-uncased", "distilbert/distilbert-base-uncased",
                                    "ORG/NAME"}
    assert {"cifar-10", "torchvision-vgg19", "yolov8n"} <= set(report.used)


def test_d2l_sources_are_read_in_their_pytorch_and_tensorflow_tabs_only(tmp_path):
    page = ("# BERT\n\n```{.python .input}\n"
            "d2l.DATA_HUB['bert.base'] = (d2l.DATA_URL + 'bert.base.zip',\n"
            "                             '7b3820b35da691042e5d34c0971ac3edbd80d3f4')\n```\n\n"
            "```{.python .input}\n#@tab pytorch\n"
            "d2l.DATA_HUB['bert.base'] = (d2l.DATA_URL + 'bert.base.torch.zip',\n"
            "                             '225d66f04cae318b841a13d32af3acc165f253ac')\n```\n\n"
            "```{.python .input}\n#@tab paddle\nd2l.download('paddle-only')\n```\n")
    (tmp_path / "bert.md").write_text(page)
    calls = survey(tmp_path, catalogue.shipped()).calls
    assert [(c.key, c.url, c.line, c.entry) for c in calls] == [
        ("bert.base", "http://d2l-data.s3-accelerate.amazonaws.com/bert.base.torch.zip", 10,
         "d2l-bert.base")]


def test_an_unknown_download_is_listed_with_a_skeleton_that_works(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "mine.py").write_text(
        "from d2l import torch as d2l\n"
        "d2l.DATA_HUB['my-set'] = (d2l.DATA_URL + 'my-set.zip',\n"
        "                          '0123456789abcdef0123456789abcdef01234567')\n"
        "d = d2l.download_extract('my-set')\n"
        "p = untar_data(URLs.CAMVID)\n")
    root = write_lab(tmp_path / "lab", {})
    proc = _cli(root, str(book))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "mine.py: line 2: d2l.DATA_HUB['my-set']" in proc.stdout
    assert "(and 1 more)" in proc.stdout  # the download_extract of the same key
    assert "mine.py: line 5: p = untar_data(URLs.CAMVID)" in proc.stdout
    assert "datasets.yaml in the lab folder" in proc.stdout
    out = json.loads(_cli(root, str(book), "--json").stdout)
    assert [u["key"] for u in out["unknown"]] == ["my-set", "CAMVID"]
    # The DATA_HUB line says everything: its skeleton is a complete entry.
    (root / "datasets.yaml").write_text("entries:\n" + out["unknown"][0]["skeleton"] + "\n")
    entry = catalogue.load(root).entries["d2l-my-set"]
    assert entry.files[0].urls == ["http://d2l-data.s3-accelerate.amazonaws.com/my-set.zip"]
    assert entry.files[0].sha1 == "0123456789abcdef0123456789abcdef01234567"
    out = json.loads(_cli(root, str(book), "--json").stdout)
    assert [u["key"] for u in out["unknown"]] == ["CAMVID"]
    assert "d2l-my-set" in out["missing"]


def test_to_fetch_is_a_sum_of_bytes_and_says_which_sizes_are_unknown(tmp_path):
    def entry(name: str, size: int | None) -> dict:
        f = {"urls": [f"http://x.invalid/{name}.bin"], "to": f"t/{name}.bin",
             "sha256": "0" * 64, **({"size": size} if size is not None else {})}
        return {"description": name, "volume": "data", "files": [f], "uses": [name]}

    root = write_lab(tmp_path / "lab", {})
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": {
        "alpha": entry("alpha", 1_500_000_000), "beta": entry("beta", 2345),
        "gamma": entry("gamma", None)}}))
    book = tmp_path / "book"
    book.mkdir()
    (book / "x.py").write_text("alpha(); beta(); gamma()\n")
    proc = _cli(root, str(book))
    assert ("to fetch: 3 entries, 1,500,002,345 B (1.5 GB) + 1 of unknown size (gamma)"
            in proc.stdout), proc.stdout
    out = json.loads(_cli(root, str(book), "--json").stdout)
    assert out["bytes_to_fetch"] == 1_500_002_345 and out["size_unknown"] == ["gamma"]


def test_the_catalogue_has_what_the_books_download_with_sizes_where_sourced():
    cat = catalogue.shipped()
    e = cat.entries
    cifar = e["cifar-10"].files[0]
    assert (cifar.size, cifar.md5, cifar.extract) == (
        170498071, "c58f30108f718f92721af3b95e74349a", "untar")
    assert e["d2l-bert.base"].files[0].sha1 == "225d66f04cae318b841a13d32af3acc165f253ac"
    assert e["d2l-bert.small"].files[0].sha1 == "c72329e68a732bef0452e4b96a1c341c8910f81f"
    assert e["torchvision-vgg19"].files[0].sha256_prefix == "dcbb9e9d"
    assert e["fastai-imagenette"].size == 1557161267
    assert e["fastai-imagenette-320"].size == 341663724
    assert e["fastai-ml-100k"].library.key == "ML_100k"  # fastai's own spelling
    assert e["fastai-ml-100k"].size == 4924029  # TensorFlow Datasets' record of the file
    assert e["fashion-mnist"].size == 26421880 + 29515 + 4422102 + 5148
    # fastdownload's check is a pair: an entry with the first MiB's md5 has the size too
    for name, entry in e.items():
        assert all(f.size is not None for f in entry.files if f.md5_first_mib), name
    # a new entry is verifiable (the image check and `labctl data get` rely on it)
    for name in ("cifar-10", "d2l-bert.base", "d2l-bert.small", "torchvision-vgg19",
                 "fastai-imagenette", "fastai-imagenette-320", "fastai-ml-100k"):
        assert all(f.verifiable for f in e[name].files), name
