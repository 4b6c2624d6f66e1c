"""The run plan, without an engine: who runs, what is mounted, ports, GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_lab

from labctl.errors import LabError
from labctl.lab import load_lab
from labctl.runplan import free_port, plan_run

SPECS = {
    "nb": "pip: [jupyterlab]\njupyter: {enabled: true, port: 8888}\nvolumes: [data, cache]\n",
    "gpu": "gpu: {cuda: '12.8'}\nvolumes: [data]\n",
    "gpureq": "gpu: {cuda: '12.8', required: true}\n",
    "book": "volumes: [data]\nsrc_volumes: {data: data}\n",
}


@pytest.fixture
def lab(tmp_path: Path):
    return load_lab(str(write_lab(tmp_path / "lab", SPECS)), environ={})


def plan(lab, name="nb", **kw):
    args = dict(image="img", user=True, uid=1234, gid=2345, rootless=False, srcs=[],
                command=None, gpus="auto", gpu_runtime=False, bind="127.0.0.1", port=None,
                token="tok", name_taken=lambda n: False, port_free=lambda p: True)
    args.update(kw)
    return plan_run(lab, lab.spec(name), **args)


def test_user_modes(lab) -> None:
    p = plan(lab)
    assert p.user_mode == "host" and p.env["LABCTL_UID"] == "1234"
    assert p.env["LABCTL_GID"] == "2345"
    root = plan(lab, uid=0, gid=0)
    assert root.user_mode == "root" and root.env["LABCTL_UID"] == "0"
    rootless = plan(lab, rootless=True)
    assert rootless.env["LABCTL_UID"] == "0" and "LABCTL_GID" not in rootless.env
    assert any("rootless" in n for n in rootless.notes)
    image = plan(lab, user=False)
    assert image.user_mode == "image" and "LABCTL_UID" not in image.env


def test_volumes_mounts_env_and_host_dirs(lab) -> None:
    p = plan(lab)
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/data"] == lab.root / "data"
    assert targets["/cache"] == lab.root / "cache"
    assert targets["/workspace/work"] == lab.root / "work"
    assert p.workdir == "/workspace/work"
    assert p.env["TORCH_HOME"] == "/cache/torch"
    assert lab.root / "cache" / "huggingface" in p.host_dirs
    assert all(not str(m.source).endswith("docker.sock") for m in p.mounts)


def test_src_mounts_and_workdir(lab, tmp_path: Path) -> None:
    a, b = tmp_path / "proj", tmp_path / "other"
    a.mkdir()
    b.mkdir()
    p = plan(lab, srcs=[str(a), f"{b}:/code"])
    assert {m.target: m.source for m in p.mounts}["/workspace/proj"] == a
    assert {m.target: m.source for m in p.mounts}["/code"] == b
    assert p.workdir == "/workspace/proj"
    with pytest.raises(LabError, match="not a folder"):
        plan(lab, srcs=[str(tmp_path / "missing")])


def test_src_volumes_book_data_convention(lab, tmp_path: Path) -> None:
    book = tmp_path / "d2l-zh"
    book.mkdir()
    p = plan(lab, "book", srcs=[str(book)])
    mounts = {m.target: m.source for m in p.mounts}
    assert mounts["/workspace/d2l-zh/data"] == lab.root / "data"
    assert book / "data" in p.host_dirs
    # A learner's own non-empty data folder is never covered.
    (book / "data").mkdir()
    (book / "data" / "mine.csv").write_text("x")
    p2 = plan(lab, "book", srcs=[str(book)])
    assert "/workspace/d2l-zh/data" not in {m.target for m in p2.mounts}


def test_jupyter_token_ports_and_url(lab) -> None:
    p = plan(lab, port_free=lambda port: port != 8888)
    assert p.env["JUPYTER_TOKEN"] == "tok"
    assert p.ports[8888] == ("127.0.0.1", 8889)
    assert p.url == "http://127.0.0.1:8889/lab?token=tok"
    assert plan(lab, port=9000).ports[8888] == ("127.0.0.1", 9000)
    wide = plan(lab, bind="0.0.0.0")
    assert any("0.0.0.0" in n for n in wide.warnings)
    cmd = plan(lab, command=["python", "x.py"])
    assert cmd.jupyter_port is None and "JUPYTER_TOKEN" not in cmd.env


def test_names_are_unique(lab) -> None:
    taken = {"labctl-nb", "labctl-nb-2"}
    assert plan(lab, name_taken=lambda n: n in taken).name == "labctl-nb-3"


def test_gpu_choices(lab) -> None:
    assert plan(lab, "gpu", gpu_runtime=True).gpus is True
    assert plan(lab, "gpu", gpu_runtime=True, gpus="none").gpus is False
    cpu = plan(lab, "gpu", gpu_runtime=False)
    assert cpu.gpus is False and any("CPU" in n for n in cpu.warnings)
    with pytest.raises(LabError, match="no GPU runtime") as info:
        plan(lab, "gpu", gpus="all", gpu_runtime=False)
    assert "labctl doctor" in str(info.value)
    with pytest.raises(LabError):
        plan(lab, "gpureq", gpu_runtime=False)
    assert plan(lab, "nb", gpus="all", gpu_runtime=True).gpus is True


def test_free_port_gives_up_with_a_fix() -> None:
    with pytest.raises(LabError, match="no free port"):
        free_port(8888, lambda p: False, tries=3)


def test_ipv6_and_wildcard_urls(lab) -> None:
    assert plan(lab, bind="::1").url == "http://[::1]:8888/lab?token=tok"
    assert plan(lab, bind="0.0.0.0").url == "http://127.0.0.1:8888/lab?token=tok"


def test_mounts_under_the_lab_home_are_refused(lab, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="/home/lab"):
        plan(lab, srcs=[f"{tmp_path}:/home/lab/proj"])
    with pytest.raises(LabError, match="'..'"):
        plan(lab, srcs=[f"{tmp_path}:/workspace/../etc"])
