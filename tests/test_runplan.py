"""The run plan, without an engine: who runs, what is mounted, ports, GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_lab

from labctl.config.lab import load_lab
from labctl.errors import LabError
from labctl.runtime.plan import bind_addresses, free_name, free_port, plan_run

SPECS = {
    "nb": "pip: [jupyterlab]\njupyter: {enabled: true, port: 8888}\nvolumes: [data, cache]\n",
    "gpu": "gpu: {cuda: '12.8'}\nvolumes: [data]\n",
    "gpureq": "gpu: {cuda: '12.8', required: true}\n",
    "book": "volumes: [data]\nsrc_volumes: {data: data}\n",
}


@pytest.fixture
def lab(tmp_path: Path):
    return load_lab(str(write_lab(tmp_path / "lab", SPECS)), environ={})


def plan(lab, name="nb", gpu_runtime=False, bind="127.0.0.1", **kw):
    args = dict(image="img", user=True, uid=1234, gid=2345, home=Path("/nonexistent-home"),
                rootless=False, srcs=[], command=None, gpus="auto",
                gpu_access="runtime" if gpu_runtime else "none",
                bind=bind_addresses(bind, has_ipv6_loopback=True), port=None, token="tok",
                token_file=None, name=f"labctl-{name}", port_free=lambda p: True)
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
    (book / "chapter_preliminaries").mkdir(parents=True)
    p = plan(lab, "book", srcs=[str(book)])
    mounts = {m.target: m.source for m in p.mounts}
    assert mounts["/workspace/d2l-zh/data"] == lab.root / "data"
    assert not (book / "data").exists()  # labctl makes no folder in the learner's tree
    # A learner's own non-empty data folder is never covered.
    (book / "data").mkdir()
    (book / "data" / "mine.csv").write_text("x")
    p2 = plan(lab, "book", srcs=[str(book)])
    assert {m.target: m.source for m in p2.mounts}["/workspace/d2l-zh/data"] == book / "data"
    assert any("already holds files" in w for w in p2.warnings)


def test_jupyter_token_ports_and_url(lab) -> None:
    p = plan(lab, port_free=lambda port: port != 8888)
    assert p.env["JUPYTER_TOKEN"] == "tok"
    assert p.publish()[8888] == [("127.0.0.1", 8889)]
    assert p.url == "http://127.0.0.1:8889/lab?token=tok"
    assert plan(lab, port=9000).publish()[8888] == [("127.0.0.1", 9000)]
    wide = plan(lab, bind="0.0.0.0")
    assert any("0.0.0.0" in n for n in wide.warnings)
    cmd = plan(lab, command=["python", "x.py"])
    assert cmd.jupyter_port is None and "JUPYTER_TOKEN" not in cmd.env


def test_names_are_unique(lab) -> None:
    taken = {"labctl-nb", "labctl-nb-2"}
    assert free_name("labctl-nb", lambda n: n in taken) == "labctl-nb-3"


def test_gpu_choices(lab) -> None:
    assert plan(lab, "gpu", gpu_runtime=True).gpus == "runtime"
    assert plan(lab, "gpu", gpu_runtime=True, gpus="none").gpus == ""
    cpu = plan(lab, "gpu", gpu_runtime=False)
    assert cpu.gpus == "" and any("CPU" in n for n in cpu.warnings)
    with pytest.raises(LabError, match="no GPU runtime") as info:
        plan(lab, "gpu", gpus="all", gpu_runtime=False)
    assert "labctl doctor" in str(info.value)
    with pytest.raises(LabError):
        plan(lab, "gpureq", gpu_runtime=False)
    assert plan(lab, "nb", gpus="all", gpu_runtime=True).gpus == "runtime"


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


# --- the house: a spec's workdir is where its sources go ------------------------------------


def test_sources_mount_under_the_specs_workdir(tmp_path: Path) -> None:
    lab = load_lab(str(write_lab(tmp_path / "lab", {
        "book": "workdir: /srv/book\nvolumes: [data]\nsrc_volumes: {data: data}\n"})),
        environ={})
    p = plan(lab, "book")
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/srv/book/work"] == lab.root / "work" and p.workdir == "/srv/book/work"
    src = tmp_path / "d2l-zh"
    (src / "chapter_x").mkdir(parents=True)
    book = plan(lab, "book", srcs=[str(src)])
    assert book.workdir == "/srv/book/d2l-zh"
    assert {m.target: m.source for m in book.mounts}["/srv/book/d2l-zh/data"] == lab.root / "data"


@pytest.fixture
def d2l_zh(tmp_path: Path) -> Path:
    """The layout of the book's notebooks: d2l-zh/pytorch/chapter_*/*.ipynb, img/ beside."""
    root = tmp_path / "d2l-zh"
    for lang in ("pytorch", "mxnet"):
        for ch in ("chapter_preliminaries", "chapter_linear-networks"):
            (root / lang / ch).mkdir(parents=True)
            (root / lang / ch / "x.ipynb").write_text("{}")
        (root / lang / "img").mkdir()
        (root / lang / "index.ipynb").write_text("{}")
    (root / "README.md").write_text("# d2l-zh")
    return root


@pytest.mark.parametrize(("level", "dest", "data_at"), [
    ("", "/workspace/d2l-zh", "/workspace/d2l-zh/pytorch/data"),
    ("pytorch", "/workspace/pytorch", "/workspace/pytorch/data"),
    ("pytorch/chapter_preliminaries", "/workspace/pytorch/chapter_preliminaries",
     "/workspace/pytorch/data"),
])
def test_the_books_data_is_the_labs_at_any_level(lab, d2l_zh: Path, level: str, dest: str,
                                                 data_at: str) -> None:
    before = sorted(p for p in d2l_zh.rglob("*"))
    p = plan(lab, "book", srcs=[str(d2l_zh / level) if level else str(d2l_zh)])
    targets = {m.target: m.source for m in p.mounts}
    assert targets[data_at] == lab.root / "data"
    assert p.workdir == dest
    if level != "pytorch/chapter_preliminaries":  # the chapters and what is beside them
        book = data_at.rsplit("/", 1)[0]
        assert targets[f"{book}/chapter_preliminaries"] == d2l_zh / "pytorch" / \
            "chapter_preliminaries"
        assert targets[f"{book}/img"] == d2l_zh / "pytorch" / "img"
        assert targets[f"{book}/index.ipynb"] == d2l_zh / "pytorch" / "index.ipynb"
    assert sorted(p for p in d2l_zh.rglob("*")) == before  # nothing made in the book


# --- hardening: binds, mount targets, host folders -------------------------------------------


@pytest.mark.parametrize(("given", "ipv6", "expected"), [
    ("localhost", True, ("127.0.0.1", "::1")), ("localhost", False, ("127.0.0.1",)),
    ("127.0.0.1", True, ("127.0.0.1",)), ("::1", True, ("::1",)),
    ("0.0.0.0", True, ("0.0.0.0",)),
])
def test_binds_are_literal_addresses(given: str, ipv6: bool, expected: tuple[str, ...]) -> None:
    assert bind_addresses(given, has_ipv6_loopback=ipv6) == expected


@pytest.mark.parametrize("given", ["", "my-laptop", "example.com", "127.0.0.1 "])
def test_a_bind_docker_would_have_to_resolve_is_refused(given: str) -> None:
    with pytest.raises(LabError) as info:
        bind_addresses(given, has_ipv6_loopback=True)
    assert "127.0.0.1" in (info.value.fix or "")


def test_localhost_publishes_on_both_loopbacks_and_nothing_else(lab) -> None:
    p = plan(lab, bind="localhost")
    assert p.publish()[8888] == [("127.0.0.1", 8888), ("::1", 8888)]
    assert not p.warnings and p.url == "http://127.0.0.1:8888/lab?token=tok"


@pytest.mark.parametrize("target", ["/", "/etc", "/usr/local", "/home", "/home/lab",
                                    "/var/run", "/tmp", "/opt/venv", "/proc"])
def test_system_folders_are_no_mount_target(lab, tmp_path: Path, target: str) -> None:
    with pytest.raises(LabError) as info:
        plan(lab, srcs=[f"{tmp_path}:{target}"])
    assert info.value.fix


def test_a_mount_above_the_workspace_is_refused(tmp_path: Path) -> None:
    lab = load_lab(str(write_lab(tmp_path / "lab", {"w": "workdir: /srv/book/x\n"})),
                   environ={})
    with pytest.raises(LabError, match="above the lab's workspace"):
        plan(lab, "w", srcs=[f"{tmp_path}:/srv/book"])


@pytest.mark.parametrize("src", ["/", "/etc", "/var/run", "/usr/lib", "/home", "/root"])
def test_system_folders_are_never_mounted_from_the_host(lab, src: str) -> None:
    with pytest.raises(LabError) as info:
        plan(lab, srcs=[src])
    assert "does not mount it" in info.value.message and info.value.fix


def test_a_homes_hidden_folders_are_mounted_only_with_a_loud_warning(lab, tmp_path: Path
                                                                     ) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    p = plan(lab, srcs=[str(home / ".ssh")], home=home)
    assert any("hidden folder" in w and "keys" in w for w in p.warnings)
    whole = plan(lab, srcs=[str(home)], home=home)
    assert any("whole home folder" in w for w in whole.warnings)
