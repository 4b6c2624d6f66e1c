"""The thin commands, without an engine: build, push, base bootstrap, devcontainer,
compose and hub say what they said before their work moved into image/, export/ and hub/
(a fake engine answers; the engine tests hold the real one to the same output)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import raises_id, write_lab

from labctl.config.lab import load_lab
from labctl.export import compose as cp
from labctl.export import devcontainer as dc
from labctl.hub import deploy
from labctl.image.build import check_tag
from labctl.runtime.plan import HostFacts, RunRequest, plan_run

SPECS = {"a": "pip: [jupyterlab]\njupyter: {enabled: true, port: 8888}\nvolumes: [data]\n",
         "b": "gpu: false\n"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_lab(tmp_path / "lab", SPECS)






# --- build -------------------------------------------------------------------------------
def test_a_tag_is_checked_before_any_build() -> None:
    check_tag(None, ("a", "b"))
    check_tag("labctl/d2l:mine", ("a",))
    with raises_id("cli.tag-many-specs"):
        check_tag("labctl/x:1", ("a", "b"))
    with raises_id("cli.bad-tag"):
        check_tag("Not A Tag!", ("a",))






# --- push --------------------------------------------------------------------------------




# --- base bootstrap ----------------------------------------------------------------------


# --- devcontainer and compose ------------------------------------------------------------
def _plan(lab, name: str, folder: Path):  # noqa: ANN001, ANN202
    facts = HostFacts(uid=os.getuid(), gid=os.getgid(), home=Path("/nonexistent-home"),
                      rootless=False, gpu_access="none", has_ipv6_loopback=False,
                      port_free=lambda ip, p: True, name_taken=lambda n: False)
    return plan_run(lab, lab.spec(name), RunRequest(user=True, srcs=(str(folder),),
                                                    gpus="none", token="tok"), facts)




def test_a_devcontainer_folder_that_leads_outside_is_refused(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / ".devcontainer").symlink_to(elsewhere)
    with raises_id("cli.link-outside"):
        dc.file_for(folder, "a", single=False)
    assert dc.file_for(tmp_path, "a", single=True) == \
        tmp_path / ".devcontainer" / "devcontainer.json"


def test_compose_writes_one_service_per_plan(root: Path, tmp_path: Path) -> None:
    lab = load_lab(str(root))
    folder = tmp_path / "work"
    folder.mkdir()
    env_file = lab.root / cp.ENV_FILE
    written = cp.export(lab, {"a": _plan(lab, "a", folder)}, None, env_file)
    assert written.as_dict() == {"file": str(lab.root / "compose.yaml"), "services": ["a"],
                                 "env_file": str(env_file)}
    assert "services:" in (lab.root / "compose.yaml").read_text()


# --- hub ---------------------------------------------------------------------------------
def test_the_hub_results_print_what_the_commands_printed(tmp_path: Path) -> None:
    written = deploy.Written(tmp_path, {"url": "http://127.0.0.1:8000/",
                                        "profiles": [{"slug": "a"}, {"slug": "b"}]})
    assert written.as_dict() == {"folder": str(tmp_path), "url": "http://127.0.0.1:8000/",
                                 "profiles": ["a", "b"]}
    started = deploy.Started(42, "http://127.0.0.1:8000/", tmp_path)
    assert started.as_dict() == {"pid": 42, "url": "http://127.0.0.1:8000/",
                                 "folder": str(tmp_path), "log": str(tmp_path / "hub.log")}
    st = deploy.Status(None, None, [])
    assert st.as_dict() == {"running": False, "pid": None, "url": None, "servers": []}


