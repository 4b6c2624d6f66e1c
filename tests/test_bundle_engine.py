"""`labctl save` on this engine, `labctl load` on a second one the test starts itself: a
rootless dockerd of the test user with its own data-root, exec-root and socket, no
network for its containers, no registry. Then `labctl list` says current there and
`labctl check` passes there; an update moves only its new layers, and a full bundle
sends the engine only the layers it lacks; a damaged bundle loads nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BASE, labctl, write_lab

pytestmark = pytest.mark.engine

SMALL = f"""\
description: a small lab that travels
base: {BASE}
pip: ["six==1.16.0"]
volumes: [data, cache, models]
checks:
  - name: offline
    run: "python -c 'import six; print(six.__version__)' && touch /data/made-on-engine-2"
"""


def images_of(host: str) -> set[str]:
    out = subprocess.run(["docker", "-H", host, "images", "-q", "--no-trunc"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_save_on_one_engine_load_on_another(lab_factory, second_engine: str,
                                            tmp_path: Path) -> None:
    lab = lab_factory({"small": SMALL})
    with (lab / "labctl.yaml").open("a") as f:  # a credential in the settings never travels
        f.write('data_mirrors: [{from: "https://d2l.example/", '
                'to: "https://student:s3cret-token@mirror.example/d2l/"}]\n')
    labctl("build", "small", cwd=lab, check=True)
    full = tmp_path / "small.labctl.zst"
    saved = labctl("save", "small", "-o", str(full), "--json", cwd=lab, check=True)
    info = json.loads(saved.stdout)
    assert info["bytes"] == full.stat().st_size and info["omitted_layers"] == 0
    assert not _contains(full, b"s3cret-token")
    listed = json.loads(labctl("load", "--list", str(full), "--json", check=True).stdout)
    assert [i["name"] for i in listed["images"]] == ["small"]

    # One package more; the update leaves out the layers the first bundle carried.
    spec = lab / "images" / "small.yaml"
    spec.write_text(spec.read_text().replace('pip: ["six==1.16.0"]',
                                             'pip: ["six==1.16.0"]\nextras: ["tomli-w==1.0.0"]'))
    labctl("build", "small", cwd=lab, check=True)
    update = tmp_path / "small-2.labctl.zst"
    inc = json.loads(labctl("save", "small", "-o", str(update), "--since", str(full),
                            "--json", cwd=lab, check=True).stdout)
    assert inc["omitted_layers"] > 0
    print(f"\nfull bundle {full.stat().st_size / 1e6:.1f} MB, update "
          f"{update.stat().st_size / 1e6:.2f} MB")
    assert update.stat().st_size < full.stat().st_size * 0.05
    full_2 = tmp_path / "small-full-2.labctl.zst"  # the new image whole, no --since
    labctl("save", "small", "-o", str(full_2), cwd=lab, check=True)

    e2 = {"DOCKER_HOST": second_engine}
    target = tmp_path / "there"
    before = images_of(second_engine)
    # The update alone needs layers engine 2 does not have: refused, nothing loaded.
    early = labctl("load", str(update), "--lab", str(target), env=e2)
    assert early.returncode != 0 and "leaves out layers" in early.stderr, early.stderr
    # A damaged or cut-short bundle: refused before anything is loaded or written.
    data = full.read_bytes()
    for bad, what in ((data[: len(data) // 2], "cut"), (_flip(data), "flipped")):
        broken = tmp_path / f"{what}.labctl.zst"
        broken.write_bytes(bad)
        proc = labctl("load", str(broken), "--lab", str(target), env=e2)
        assert proc.returncode != 0 and "damaged or incomplete" in proc.stderr, proc.stderr
    assert images_of(second_engine) == before and not target.exists()

    loaded = labctl("load", str(full), "--lab", str(target), "--json", env=e2, check=True)
    assert json.loads(loaded.stdout)["images"]["small"].endswith("small:latest")
    assert "s3cret-token" not in (target / "labctl.yaml").read_text()
    rows = json.loads(labctl("list", "--json", cwd=target, env=e2, check=True).stdout)
    assert {r["name"]: r["state"] for r in rows} == {"small": "current"}
    assert json.loads(loaded.stdout)["layers_already_here"] == 0
    # The new image, whole, into another folder there: the layers below the new step are
    # not sent again (those above it are: their stack is new); the engine builds the image
    # on the ones it has, and its check passes.
    old = listed["images"][0]["diff_ids"]
    new = json.loads(labctl("load", "--list", str(full_2), "--json", check=True
                            ).stdout)["images"][0]["diff_ids"]
    same = next(i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b)
    there_2 = tmp_path / "there-2"
    got = json.loads(labctl("load", str(full_2), "--lab", str(there_2), "--json", env=e2,
                            check=True).stdout)
    assert got["layers_already_here"] == len(set(new[:same]) - set(new[same:])) > 0, got
    assert got["layers_sent"] == len(set(new[same:])), got
    checked = labctl("check", "small", "--json", cwd=there_2, env=e2)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The learner keeps the loaded spec as it is: the update replaces it and loads.
    labctl("load", str(update), "--lab", str(target), env=e2, check=True)
    rows = json.loads(labctl("list", "--json", cwd=target, env=e2, check=True).stdout)
    assert {r["name"]: r["state"] for r in rows} == {"small": "current"}
    checked = labctl("check", "small", "--json", cwd=target, env=e2)
    results = json.loads(checked.stdout or "[]")
    assert checked.returncode == 0 and [r["status"] for r in results] == ["pass"], \
        checked.stdout + checked.stderr
    made = target / "data" / "made-on-engine-2"
    assert made.stat().st_uid == os.getuid()
    # A spec the learner changed there is theirs: a load that would replace it refuses.
    (target / "images" / "small.yaml").write_text(SMALL + "# mine\n")
    again = labctl("load", str(full), "--lab", str(target), env=e2)
    assert again.returncode != 0 and "images/small.yaml" in again.stderr


def _contains(bundle: Path, needle: bytes) -> bool:
    import zstandard

    tail = b""
    with bundle.open("rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
        for chunk in iter(lambda: r.read(1 << 20), b""):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def _flip(data: bytes) -> bytes:
    mid = len(data) // 3
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def test_save_refuses_what_is_not_built(lab_factory, tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "lab", {"unbuilt": SMALL})
    out = tmp_path / "x.labctl.zst"
    proc = labctl("save", "unbuilt", "-o", str(out), cwd=lab)
    assert proc.returncode != 0 and "labctl build unbuilt" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".x.labctl.zst*"))
