"""The domain functions the thin `run`, `shell`, `ps`, `stop`, `check`, `lock`, `diff` and
`why` commands call, without an engine: a fake engine records what is asked of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import raises_id, write_lab
from test_conflicts import LOCK as CF_LOCK

from labctl import labels
from labctl.runtime import containers
from labctl.runtime.check import CheckReport, CheckResult, compat_rows
from labctl.runtime.plan import TOKEN_IN_CONTAINER

# the lock of tests/test_conflicts.py without its last package: four, the spec's and theirs
LOCK = CF_LOCK.replace("six==1.16.0\n    # via images/cf.yaml (pip)\n", "")


class FakeContainer:
    def __init__(self, name: str, lab: Path, *, token: Path | None = None,
                 env: list[str] | None = None, logs: Any = None) -> None:
        self.name, self.id, self.status = name, name, "running"
        self.labels = {labels.RUN: "1", labels.OWNER: str(os.getuid()), labels.LAB: str(lab),
                       labels.SPEC: "cf", labels.URL: "http://127.0.0.1:8888/lab"}
        self.attrs: dict[str, Any] = {
            "Config": {"Image": "img:latest", "Env": env or [], "WorkingDir": ""},
            "Mounts": [{"Destination": TOKEN_IN_CONTAINER, "Source": str(token)}] if token
            else [],
            "NetworkSettings": {"Ports": {"8888/tcp": [{"HostIp": "127.0.0.1",
                                                        "HostPort": "8888"}]}}}
        self.image = SimpleNamespace(tags=["img:latest"], id="sha256:1")
        self._logs = logs

    def logs(self, **kw: Any) -> Any:
        if callable(self._logs):
            return self._logs()
        return iter([])

    def reload(self) -> None:
        pass


def test_shell_user_is_the_labs_own_with_its_home() -> None:
    you = containers.shell_user(FakeContainer("a", Path("/x"), env=["LABCTL_UID=1234",
                                                                     "LABCTL_GID=99"]))
    assert (you.user, you.home, you.workdir) == ("1234:99", "/home/lab", "/")
    root = containers.shell_user(FakeContainer("a", Path("/x"), env=["LABCTL_UID=0"]))
    assert (root.user, root.home) == ("0:0", "/root")
    image = containers.shell_user(FakeContainer("a", Path("/x")))
    assert image.user == "1000:1000"


def test_check_report_as_json_and_compat_rows(tmp_path: Path) -> None:
    r = CheckResult("smoke", "fail", 1.5, "boom")
    assert r.as_dict() == r.__dict__ == {"name": "smoke", "status": "fail", "seconds": 1.5,
                                         "output": "boom"}
    assert CheckReport("cf", [r, CheckResult("ok", "pass", 1, "")], []).failed == [r]
    assert compat_rows(SimpleNamespace(compat=[])) == []  # type: ignore[arg-type]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = write_lab(tmp_path / "lab", {"cf": "base: debian:bookworm\npip:\n  - cfa>=2.0\n"
                                              "  - cfd\n", "nolock": "base: debian:bookworm\n"})
    (root / "images" / "cf.lock").write_text(LOCK)
    (root / "old.lock").write_text(LOCK.replace("cfc==13.0", "cfc==12.0") + "gone==1.0\n")
    return root


def test_lock_request_checks_every_spec_and_option_first(lab: Path) -> None:
    from labctl.config.lab import load_lab
    from labctl.lock.resolve import lock_request

    root = load_lab(str(lab))
    specs, how = lock_request(root, (), False, ("cfa, cfd",))
    assert [s.name for s in specs] == sorted(["cf", "nolock"]) and how == "cfa cfd"
    with raises_id("cli.upgrade-both"):
        lock_request(root, ("cf",), True, ("cfa",))
    with raises_id("lock.bad-package-name"):
        lock_request(root, ("cf",), False, ("no way",))


def test_diff_of_two_locks_needs_no_engine(lab: Path) -> None:
    from labctl.config.lab import load_lab
    from labctl.lock.resolve import compare

    def no_engine() -> Any:
        raise AssertionError("two lock files need no engine")

    found = compare(str(lab / "old.lock"), str(lab / "images" / "cf.lock"),
                    load_lab(str(lab)), no_engine)
    data = found.as_dict()
    assert data["same"] == 3 and [c["change"] for c in data["changes"]] == [
        "upgraded", "removed"]


def test_why_and_diff_commands_print_as_before(lab: Path) -> None:
    from labctl.cli import cli

    runner = CliRunner()
    why = runner.invoke(cli, ["why", "cf", "cfc", "--lab", str(lab)])
    assert why.exit_code == 0, why.output
    assert "cfc 13.0 in images/cf.lock (stale:" in why.output
    assert "cfa>=2.0: cfa 2.1 -> cfb 2.0 -> cfc 13.0" in why.output
    data = json.loads(runner.invoke(cli, ["why", "cf", "cfc", "--json", "--lab", str(lab)]
                                    ).output)
    assert data["spec"] == "cf" and data["lock"] == "images/cf.lock" and data["stale"]
    assert sorted(data["brought_in_by"]) == ["cfa>=2.0", "cfd"]
    missing = runner.invoke(cli, ["why", "nolock", "six", "--lab", str(lab)])
    assert missing.exit_code == 1
    same = runner.invoke(cli, ["diff", str(lab / "images" / "cf.lock"),
                               str(lab / "images" / "cf.lock"), "--lab", str(lab)])
    assert "the same 4 packages" in same.output
