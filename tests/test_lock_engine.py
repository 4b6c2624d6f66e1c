"""`labctl lock`, `freeze` and `diff` on the real engine, with a tiny spec (no torch)."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from conftest import BASE, labctl

pytestmark = pytest.mark.engine

SMALL = f"""\
description: a small locked lab for the tests
base: {BASE}
pip: ["requests<2.32"]
extras: ["six"]
"""


def freeze(root) -> dict[str, str]:
    out = labctl("freeze", "small", "--json", cwd=root, check=True).stdout
    return json.loads(out)["packages"]


def lock_state(root) -> str:
    rows = json.loads(labctl("list", "--json", cwd=root, check=True).stdout)
    return next(r["lock"] for r in rows if r["name"] == "small")


def test_lock_build_reproduce_stale_upgrade(docker_client, lab_factory):
    root = lab_factory({"small": SMALL})
    lock_file = root / "images" / "small.lock"
    assert lock_state(root) == "none"

    locked = labctl("lock", "small", cwd=root, check=True)
    assert "wrote images/small.lock" in locked.stdout
    text = lock_file.read_text()
    assert re.search(r"^requests==2\.31\.0 \\$", text, re.M), text[:2000]
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", text, re.M))
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "six"} <= set(pins)
    assert text.count("--hash=sha256:") >= len(pins)  # every pin is hashed
    assert lock_state(root) == "locked"
    # The resolver wrote nothing into the lab (its inputs were mounted read-only).
    for p in root.rglob("*"):
        assert p.lstat().st_uid == os.getuid(), p

    # Two builds from a clean cache install exactly the locked versions.
    first = labctl("build", "small", "--no-cache", "--locked", "--progress", "plain",
                   cwd=root, check=True)
    assert "small: step" in first.stdout
    assert "-c /opt/labctl/lock-pip.txt" in labctl("render", "small", cwd=root,
                                                     check=True).stdout
    installed = freeze(root)
    assert {k: installed[k] for k in pins} == pins
    labctl("build", "small", "--no-cache", "--locked", cwd=root, check=True)
    assert freeze(root) == installed

    # The image matches its lock: only the venv's own tools are outside it.
    same = json.loads(labctl("diff", str(lock_file), "small", "--json", cwd=root,
                             check=True).stdout)
    assert same["changes"] and {c["change"] for c in same["changes"]} == {"not locked"}
    assert "pip" in {c["package"] for c in same["changes"]}

    # The spec changes: the lock is stale, --locked refuses, a plain build warns.
    (root / "images" / "small.yaml").write_text(SMALL.replace("requests<2.32", "requests<2.33"))
    assert lock_state(root) == "stale"
    refused = labctl("build", "small", "--locked", cwd=root)
    assert refused.returncode == 1
    assert "images/small.lock is stale: images/small.yaml changed" in refused.stderr
    assert "labctl lock small" in refused.stderr
    warned = labctl("build", "small", cwd=root, check=True)
    assert "warning: images/small.lock is stale" in warned.stderr
    assert freeze(root)["requests"] == "2.31.0"  # the pins that still fit were kept

    # Locking again keeps the versions; an upgrade of one package moves it alone.
    old_lock = root / "old.lock"
    shutil.copy(lock_file, old_lock)
    again = labctl("lock", "small", cwd=root, check=True)
    assert "no version changed" in again.stdout and lock_state(root) == "locked"
    up = labctl("lock", "small", "--upgrade-package", "requests", cwd=root, check=True)
    m = re.search(r"requests\s*│\s*2\.31\.0\s*│\s*(2\.32\.\d+)\s*│\s*upgraded", up.stdout)
    assert m, up.stdout
    assert f"requests=={m[1]}" in lock_file.read_text()
    assert "1 changed" in up.stdout  # requests' dependencies kept their versions

    # --json, and `labctl diff` between the two lock files.
    again_json = json.loads(labctl("lock", "small", "--json", cwd=root, check=True).stdout)
    assert again_json[0]["changes"] == [] and again_json[0]["hashed"] == len(pins)
    changes = json.loads(labctl("diff", str(old_lock), str(lock_file), "--json", cwd=root,
                                check=True).stdout)["changes"]
    assert changes == [{"package": "requests", "old": "2.31.0", "new": m[1],
                        "change": "upgraded"}]


def test_a_tampered_hash_fails_the_build(docker_client, lab_factory):
    root = lab_factory({"small": SMALL})
    labctl("lock", "small", cwd=root, check=True)
    lock_file = root / "images" / "small.lock"
    text = lock_file.read_text()
    # Every hash of idna replaced: the downloaded wheel can no longer match.
    block = re.search(r"^idna==.*?(?=^\S)", text, re.M | re.S)
    assert block, text[:1000]
    bad = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, block[0])
    lock_file.write_text(text.replace(block[0], bad))
    proc = labctl("build", "small", "--progress", "plain", cwd=root)
    assert proc.returncode == 1
    assert "Hash mismatch" in proc.stdout + proc.stderr and "idna" in proc.stderr
    assert "labctl lock small" in proc.stderr
    listed = json.loads(labctl("list", "--json", cwd=root, check=True).stdout)
    assert next(r["state"] for r in listed if r["name"] == "small") != "current"


def test_unbuilt_and_unlocked(docker_client, lab_factory):
    root = lab_factory({"unbuilt": SMALL})  # a name no other test builds
    missing = labctl("freeze", "unbuilt", cwd=root)
    assert missing.returncode == 1 and "labctl build" in missing.stderr
    nolock = labctl("build", "unbuilt", "--locked", cwd=root)
    assert nolock.returncode == 1
    assert "images/unbuilt.yaml has no lock file" in nolock.stderr
    assert "labctl lock unbuilt" in nolock.stderr
