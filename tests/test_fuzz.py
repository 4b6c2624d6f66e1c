"""Fuzzing the loaders: whatever a spec, labctl.yaml or volumes.yaml holds, labctl answers
with a LabError (one screen, a file and a fix) or a valid result, never a traceback.

The budget is small by default so CI stays fast; LABCTL_FUZZ_EXAMPLES=5000 runs longer.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl import resources
from labctl.config.lab import load_lab
from labctl.config.spec import ImageSpec, load_spec
from labctl.errors import LabError
from labctl.image.render import render

EXAMPLES = int(os.environ.get("LABCTL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get(
    "LABCTL_FUZZ_RANDOM"), suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.function_scoped_fixture])
SPEC_KEYS = [k for k in ImageSpec.model_fields if k not in ("source", "chain", "where")]
TRICKY = st.sampled_from([
    "", " ", "$PATH", "${HOME}", "\\$", "$", "..", "../../etc", "/", "/etc", "~root",
    "a\nRUN id", "\x00", "\t", '"', "'", "\\", "true", "null", "1e9", "-1", "０", "中文",
    "http://u:p@h/simple", "git+https://x/y", "torch==2.10.0", "cu128", "/home/lab",
    "LABCTL_UID", "a" * 300, "\u202e", "0x10",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=40), TRICKY)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.one_of(TRICKY, st.text(max_size=10),
                                                      st.sampled_from(SPEC_KEYS)),
                                            inner, max_size=5)),
    max_leaves=20,
)
SPECS = st.dictionaries(st.one_of(st.sampled_from(SPEC_KEYS + ["extends", "name"]), TRICKY),
                        VALUES, max_size=8)


def _lab(tmp: Path) -> Path:
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    shutil.copy(resources.default_volumes_file(), tmp / "volumes.yaml")
    (tmp / "images" / "base.yaml").write_text("pip: [six]\n")
    return tmp


def _as_yaml(data: object) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, UnicodeEncodeError, ValueError):
        return repr(data).encode("utf-8", "replace")


def _no_traceback(root: Path) -> None:
    try:
        lab = load_lab(str(root), environ={}, host_root=root / "no-host")
        for name in lab.spec_names():
            try:
                render(lab, lab.spec(name))
            except LabError as e:
                assert e.message and str(e)
    except LabError as e:
        assert e.message and str(e)


@FUZZ
@given(data=SPECS)
def test_spec_structures(tmp_path_factory, data: dict[object, object]) -> None:
    root = _lab(tmp_path_factory.getbasetemp() / "fuzz-spec")
    (root / "images" / "x.yaml").write_bytes(_as_yaml(data))
    try:
        load_spec("x", root / "images")
    except LabError as e:
        assert e.file and e.message
    _no_traceback(root)


@FUZZ
@given(raw=st.binary(max_size=600))
def test_spec_bytes(tmp_path_factory, raw: bytes) -> None:
    root = _lab(tmp_path_factory.getbasetemp() / "fuzz-bytes")
    (root / "images" / "x.yaml").write_bytes(raw)
    _no_traceback(root)


@FUZZ
@given(settings_data=st.dictionaries(
    st.sampled_from(["network", "wheelhouse", "tag_prefix", "bind", "x"]), VALUES, max_size=4),
       network=st.dictionaries(st.sampled_from(
           ["index_url", "extra_index_urls", "apt_mirror", "http_proxy", "https_proxy",
            "no_proxy", "ca_bundle"]), VALUES, max_size=4),
       volumes=st.dictionaries(st.one_of(st.text(max_size=8), TRICKY), VALUES, max_size=3))
def test_settings_and_volumes(tmp_path_factory, settings_data: dict, network: dict,
                              volumes: dict) -> None:
    root = _lab(tmp_path_factory.getbasetemp() / "fuzz-settings")
    if network:
        settings_data = {**settings_data, "network": network}
    (root / "labctl.yaml").write_bytes(_as_yaml(settings_data))
    (root / "volumes.yaml").write_bytes(_as_yaml({"volumes": volumes}))
    _no_traceback(root)


@FUZZ
@given(cut=st.integers(0, 2000), insert=st.one_of(TRICKY, st.text(max_size=20)))
def test_shipped_specs_with_a_splice(tmp_path_factory, cut: int, insert: str) -> None:
    root = _lab(tmp_path_factory.getbasetemp() / "fuzz-splice")
    for src in resources.default_images_dir().glob("*.yaml"):
        text = src.read_text(encoding="utf-8")
        at = cut % (len(text) + 1)
        (root / "images" / src.name).write_text(text[:at] + insert + text[at:],
                                                encoding="utf-8", errors="surrogatepass")
    _no_traceback(root)


@FUZZ
@given(entries=st.dictionaries(st.one_of(st.text(max_size=10), TRICKY), st.dictionaries(
    st.sampled_from(["description", "volume", "files", "labs", "library", "uses", "x"]),
    VALUES, max_size=6), max_size=3))
def test_a_labs_datasets_file(tmp_path_factory, entries: dict) -> None:
    from labctl.data import catalogue

    root = _lab(tmp_path_factory.getbasetemp() / "fuzz-datasets")
    (root / "datasets.yaml").write_bytes(_as_yaml({"entries": entries}))
    try:
        catalogue.load(root)
    except LabError as e:
        assert e.file and e.message
