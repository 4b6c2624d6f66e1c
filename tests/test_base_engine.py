"""`labctl base bootstrap` picks its mirror as `labctl build` does: the command line, then
labctl.yaml, then LABCTL_APT_MIRROR, then Debian's. A stand-in mmdebstrap on PATH records
the mirror it was given and stops there, so no root file system is made."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from conftest import labctl, write_lab

pytestmark = pytest.mark.engine


@pytest.fixture
def recorder(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mmdebstrap"
    tool.write_text('#!/bin/sh\necho "args: $*"\nexit 3\n')
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(("settings", "env", "flag", "expected"), [
    ("network: {apt_mirror: 'http://from-yaml.example/debian'}\n",
     {"LABCTL_APT_MIRROR": "http://from-env.example/debian"}, None, "from-yaml"),
    ("", {"LABCTL_APT_MIRROR": "http://from-env.example/debian"}, None, "from-env"),
    ("network: {apt_mirror: 'http://from-yaml.example/debian'}\n", {},
     "http://from-flag.example/debian", "from-flag"),
])
def test_the_mirror_precedence_is_the_builds(docker_client, tmp_path: Path, recorder,
                                             settings: str, env: dict[str, str],
                                             flag: str | None, expected: str) -> None:
    root = write_lab(tmp_path / "lab", {}, settings)
    image = f"labctl-test-base-{uuid.uuid4().hex[:8]}:bookworm"
    args = ["base", "bootstrap", image] + (["--mirror", flag] if flag else [])
    proc = labctl(*args, cwd=root, env={**recorder, **env})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"http://{expected}.example/debian" in proc.stderr
    assert "Traceback" not in proc.stderr
