"""The book-compatibility shims of labctl_site.py (what runs at every Python start in a
lab), without an image: every shim the compat table names exists, and each one does what
its table row says on a stand-in of the module it patches."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "labctl" / "incontainer" / "image" / "python" / "labctl_site.py"


@pytest.fixture(scope="module")
def site() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("labctl_site_under_test", SITE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shim_of_the_compat_table_exists(site: types.ModuleType) -> None:
    items = yaml.safe_load((REPO / "labctl" / "tables" / "compat.yaml").read_text())["items"]
    named = {i["shim"] for i in items.values() if i.get("shim")}
    assert named and named <= set(site.PATCHES) | set(site.PROVIDES)


def test_yolov5_asks_the_hub_only_about_what_is_not_on_disk(site: types.ModuleType,
                                                            tmp_path: Path) -> None:
    asked: list[str] = []

    def offline(repo_id: str, hf_token: object = None) -> str:
        asked.append(repo_id)
        raise ConnectionError("offline")  # what requests raises with no network

    fake = types.SimpleNamespace(attempt_download_from_hub=offline)
    site._yolov5_hub_offline(fake)
    best = tmp_path / "best.pt"
    best.write_bytes(b"x")
    assert fake.attempt_download_from_hub(str(best)) is None
    assert fake.attempt_download_from_hub("") is None
    assert asked == []  # a local file and no weights never reach the Hub
    assert fake.attempt_download_from_hub("keremberke/yolov5n-license-plate") is None
    assert asked == ["keremberke/yolov5n-license-plate"]  # offline: not a Hub model


def test_plot_partial_dependence_draws_with_the_display(site: types.ModuleType) -> None:
    calls = []
    display = types.SimpleNamespace(from_estimator=lambda *a, **k: calls.append((a, k)))
    fake = types.SimpleNamespace(PartialDependenceDisplay=display)
    site._plot_partial_dependence(fake)
    fake.plot_partial_dependence("est", "X", [0], kind="average")
    assert calls == [(("est", "X", [0]), {"kind": "average"})]
