"""The domain results the thin `data`, `df`, `prune` and `load` commands print: each
entry's state decided once (labctl.data.report), the import, the removal, and the --json
shapes of the results (as_dict), which scripts read and must not drift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from conftest import raises_id, write_lab

from labctl.bundle import format as fmt
from labctl.bundle import transfer
from labctl.config.lab import Lab, load_lab
from labctl.data import catalogue, fetch, report, store
from labctl.image import disk

A, B = b"aaa", b"bbbb"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    root = write_lab(tmp_path / "lab", {})
    entries = {
        "pair": {"description": "two files", "volume": "data", "labs": ["tiny"], "files": [
            {"urls": ["https://example.invalid/a.bin"], "to": "pair/a.bin", "sha256": _sha(A)},
            {"urls": ["https://example.invalid/b.bin"], "to": "pair/b.bin", "size": 4}]},
        "bad": {"description": "too small", "volume": "data", "files": [
            {"urls": ["https://example.invalid/c.bin"], "to": "bad/c.bin", "size": 10}]},
        "loose": {"description": "no checksum", "volume": "data", "files": [
            {"urls": ["https://example.invalid/d.bin"], "to": "loose/d.bin"}]},
    }
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return load_lab(str(root), environ={})


def _put(lab: Lab, rel: str, data: bytes) -> None:
    path = lab.root / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _state(lab: Lab, name: str) -> str:
    cat = catalogue.load(lab.root)
    return report.states(lab, cat, [name])[0].state


def test_an_entrys_state_is_decided_once_from_its_files(lab: Lab, tmp_path: Path) -> None:
    assert _state(lab, "pair") == "missing"
    _put(lab, "bad/c.bin", b"x")
    assert _state(lab, "bad") == "corrupt"  # there, and fails its library's check
    _put(lab, "loose/d.bin", b"x")
    assert _state(lab, "loose") == "unverified"  # there, not placed by labctl
    (tmp_path / "a.bin").write_bytes(A)
    report.import_files(lab, "pair", str(tmp_path / "a.bin"))
    assert _state(lab, "pair") == "partial"
    (tmp_path / "b.bin").write_bytes(B)
    report.import_files(lab, "pair", str(tmp_path / "b.bin"))
    assert _state(lab, "pair") == "present"


def test_the_listing_json_keeps_its_keys_in_order(lab: Lab) -> None:
    rows = report.listing(lab, ["pair"], None)
    assert [r.name for r in rows] == ["pair"]  # named: no Hugging Face cache rows
    doc = rows[0].as_dict()
    assert list(doc) == ["name", "description", "labs", "volume", "size", "state", "files"]
    assert list(doc["files"][0]) == ["path", "present", "bytes", "problem"]
    assert [r.name for r in report.listing(lab, [], "tiny")] == ["pair"]
    rows[0].used_by = ["book.ipynb"]  # `data scan` rows say where they are used, last
    assert list(rows[0].as_dict())[-1] == "used_by"


def test_an_unknown_name_is_refused_with_the_close_ones(lab: Lab) -> None:
    cat = catalogue.load(lab.root)
    with raises_id("cli.no-catalogue-entry") as info:
        report.select(cat, ["pairs"], None)
    assert "pair" in (info.value.fix or "")
    assert report.select(cat, [], None) == list(cat.entries)


def test_an_import_places_what_it_finds_and_names_what_it_lacks(lab: Lab, tmp_path: Path
                                                                 ) -> None:
    folder = tmp_path / "downloads"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "a.bin").write_bytes(A)
    got = report.import_files(lab, "pair", str(folder))
    assert got.as_dict() == {"name": "pair", "placed": [str(lab.root / "data/pair/a.bin")],
                             "missing": ["b.bin"]}
    (tmp_path / "other.bin").write_bytes(A)
    with raises_id("cli.no-matching-files"):  # a lone file named neither a.bin nor b.bin
        report.import_files(lab, "pair", str(tmp_path / "other.bin"))


class _Bar:
    """A progress display that shows nothing."""

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, name: str, done: int, total: int | None) -> None:
        pass


def test_get_fetches_only_what_is_not_in_place(lab: Lab, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.bin").write_bytes(A)
    report.import_files(lab, "pair", str(tmp_path / "a.bin"))
    asked: list[str] = []

    def fake_fetch(lab: Lab, name: str, entry: catalogue.Entry, f: catalogue.DataFile, *,
                   progress: fetch.Progress, s: object = None) -> Path:
        asked.append(f.name)
        (tmp_path / f.name).write_bytes(B)
        return store.place(store.volume_root(lab, name, entry), name, f, tmp_path / f.name,
                           move=False)

    monkeypatch.setattr(fetch, "fetch_file", fake_fetch)
    rows = report.get(lab, ["pair"], None, _Bar)
    assert asked == ["b.bin"] and [(r.name, r.state) for r in rows] == [("pair", "present")]


def test_a_removal_lists_then_removes_the_entrys_files_only(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(A)
    report.import_files(lab, "pair", str(tmp_path / "a.bin"))
    _put(lab, "mine.txt", b"the learner's")
    plan = report.removal(lab, "pair")
    assert lab.root / "data/pair/a.bin" in plan.paths and plan.total == sum(plan.sizes) > 0
    done = plan.apply()
    assert done.as_dict() == {"name": "pair", "removed": [str(p) for p in plan.paths],
                              "freed": done.freed}
    assert not (lab.root / "data/pair/a.bin").exists() and (lab.root / "data/mine.txt").exists()
    assert report.removal(lab, "pair").paths == []
    assert report.Removed("pair").as_dict() == {"name": "pair", "removed": [], "freed": 0}


def test_the_prune_json_shapes() -> None:
    item = disk.PruneItem("image", "abc", "tiny (untagged)", 40, "older")
    plan = disk.PrunePlan([item], images_bytes=40)
    empty = disk.PrunePlan()
    assert plan.as_dict_unapplied(dry_run=True) == {"plan": plan.as_dict(), "dry_run": True}
    # nothing to remove: the figures of a prune, --dry-run or not
    for dry in (True, False):
        assert empty.as_dict_unapplied(dry_run=dry) == {"plan": empty.as_dict(), "removed": [],
                                                        "freed": 0}
    done = disk.PruneResult(plan, [item], [], 40, None).as_dict()
    assert list(done) == ["plan", "removed", "skipped", "freed", "measured"]


def test_the_bundle_results_json_shapes(tmp_path: Path) -> None:
    img = fmt.BundleImage(name="tiny", tag="t/tiny:1", id="sha256:x", hash=None,
                          diff_ids=["a"], size=5)
    saved = transfer.SaveResult(tmp_path / "b.zst", 10, [img], 1, 0, 1.26)
    assert saved.as_dict() == {"file": str(tmp_path / "b.zst"), "bytes": 10, "layers": 1,
                               "omitted_layers": 0, "seconds": 1.3,
                               "images": [img.model_dump()]}
    loaded = transfer.LoadResult(tmp_path, [("tiny", "t/tiny:1")], ["a"], ["b"], [], [], 2.04,
                                 3, 1)
    assert loaded.as_dict() == {"lab": str(tmp_path), "images": {"tiny": "t/tiny:1"},
                                "written": ["a"], "unchanged": ["b"], "data": [],
                                "layers_sent": 3, "layers_already_here": 1, "seconds": 2.0}
