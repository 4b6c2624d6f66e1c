"""The run plan, without an engine: who runs, what is mounted, ports, GPUs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import raises_id, write_lab

from labctl.config.lab import load_lab
from labctl.errors import LabError
from labctl.runtime.plan import (
    HostFacts,
    RunRequest,
    bind_addresses,
    free_name,
    free_port,
    plan_run,
)

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
    """The plan of spec NAME; ``kw``: RunRequest fields, or the host's uid/gid/home/
    rootless/port_free."""
    host = {k: kw.pop(k) for k in ("uid", "gid", "home", "rootless", "port_free") if k in kw}
    facts = HostFacts(**{"uid": 1234, "gid": 2345, "home": Path("/nonexistent-home"),
                         "rootless": False, "gpu_access": "runtime" if gpu_runtime else "none",
                         "has_ipv6_loopback": True, "port_free": lambda ip, p: True,
                         "name_taken": lambda n: False, **host})
    kw = {k: tuple(v) if k in ("srcs", "command") else v for k, v in kw.items()}
    request = RunRequest(**{"user": True, "bind": bind, "token": "tok", **kw})
    return plan_run(lab, lab.spec(name), request, facts)


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
    with raises_id("run.src-not-folder"):
        plan(lab, srcs=[str(tmp_path / "missing")])


def test_src_volumes_book_data_convention(lab, tmp_path: Path) -> None:
    book = tmp_path / "d2l-zh"
    (book / "chapter_preliminaries").mkdir(parents=True)
    p = plan(lab, "book", srcs=[str(book)])
    mounts = {m.target: m.source for m in p.mounts}
    assert mounts["/workspace/d2l-zh"] == book  # whole: live and writable at every level
    assert mounts["/workspace/d2l-zh/data"] == lab.root / "data"
    # The mount point is made by labctl, as the learner, before the container starts:
    # planning lists it and makes nothing.
    assert p.src_dirs == [book / "data"] and book / "data" in p.host_dirs
    assert not (book / "data").exists()
    # A learner's own non-empty data folder is never covered: the book uses its own.
    (book / "data").mkdir()
    (book / "data" / "mine.csv").write_text("x")
    p2 = plan(lab, "book", srcs=[str(book)])
    assert "/workspace/d2l-zh/data" not in {m.target for m in p2.mounts}
    assert p2.src_dirs == []
    assert any("already holds files" in w and f"mv {book / 'data'}/*" in w
               for w in p2.warnings)


def test_jupyter_token_ports_and_url(lab) -> None:
    p = plan(lab, port_free=lambda ip, port: port != 8888)
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
    with raises_id("run.no-gpu-runtime") as info:
        plan(lab, "gpu", gpus="all", gpu_runtime=False)
    assert "labctl doctor" in str(info.value)
    with pytest.raises(LabError):
        plan(lab, "gpureq", gpu_runtime=False)
    assert plan(lab, "nb", gpus="all", gpu_runtime=True).gpus == "runtime"


def test_free_port_gives_up_with_a_fix() -> None:
    with raises_id("run.no-free-port"):
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
    src = d2l_zh / level if level else d2l_zh
    p = plan(lab, "book", srcs=[str(src)])
    targets = {m.target: m.source for m in p.mounts}
    assert targets[data_at] == lab.root / "data"
    assert p.workdir == dest
    assert targets[dest] == src  # the folder is mounted whole, never entry by entry
    assert not any(t.endswith(("/img", "/index.ipynb", "/README.md")) for t in targets)
    if level == "pytorch/chapter_preliminaries":  # one chapter: data beside it, as before
        assert p.src_dirs == []
    else:
        book = src if level else src / "pytorch"
        assert book / "data" in p.src_dirs
    assert sorted(p for p in d2l_zh.rglob("*")) == before  # planning makes nothing


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A learner's study folder: the notebooks three levels down, doc/d2l-zh/<fw>/."""
    root = tmp_path / "study"
    for fw in ("pytorch", "tensorflow"):
        (root / "doc" / "d2l-zh" / fw / "chapter_preliminaries").mkdir(parents=True)
    (root / "fastbook").mkdir()
    (root / "fastbook" / "01_intro.ipynb").write_text("{}")
    return root


def test_book_levels_are_found_at_depth_three(lab, study: Path) -> None:
    p = plan(lab, "book", srcs=[str(study)])
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/workspace/study"] == study
    for fw in ("pytorch", "tensorflow"):
        assert targets[f"/workspace/study/doc/d2l-zh/{fw}/data"] == lab.root / "data"
    assert p.src_dirs == [study / "doc" / "d2l-zh" / fw / "data"
                          for fw in ("pytorch", "tensorflow")]
    assert all(d in p.host_dirs for d in p.src_dirs)
    assert "/workspace/study/data" not in targets  # no book at the top: nothing made there


@pytest.mark.parametrize("where", [
    ".git/modules/d2l-zh", "venv/lib", ".venv/lib", "env/lib", "node_modules/pkg",
    "__pycache__", "a/b/c/d/e/f/g",  # deeper than the search goes
])
def test_hidden_venv_node_modules_and_deep_folders_are_not_searched(lab, study: Path,
                                                                     where: str) -> None:
    (study / "env" / "pyvenv.cfg").parent.mkdir()
    (study / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (study / where / "chapter_x").mkdir(parents=True)
    p = plan(lab, "book", srcs=[str(study)])
    assert not any(str(d).startswith(str(study / where.split("/")[0])) for d in p.src_dirs)
    assert len(p.src_dirs) == 2  # the two real books only


def test_the_lab_folder_itself_as_src(lab) -> None:
    root = lab.root.resolve()
    (root / "doc" / "d2l-zh" / "pytorch" / "chapter_x").mkdir(parents=True)
    (root / "chapter_notes").mkdir()  # the lab folder is a book level itself
    (root / "data" / "book" / "chapter_y").mkdir(parents=True)  # the lab's own volume
    (root / "cache" / "chapter_z").mkdir(parents=True)
    p = plan(lab, "book", srcs=[str(root)])
    targets = {m.target: m.source for m in p.mounts}
    dest = f"/workspace/{root.name}"
    assert targets[dest] == root
    assert targets[f"{dest}/doc/d2l-zh/pytorch/data"] == root / "data"
    assert f"{dest}/data" not in targets  # its data/ already is the lab's data folder
    assert not any("/data/book" in t or "/cache/" in t for t in targets)
    assert p.src_dirs == [root / "doc" / "d2l-zh" / "pytorch" / "data"]
    assert not any("already holds files" in w for w in p.warnings)


def test_a_book_level_with_its_own_data_keeps_it(lab, study: Path) -> None:
    own = study / "doc" / "d2l-zh" / "pytorch" / "data"
    own.mkdir()
    (own / "house_tiny.csv").write_text("x")
    empty = study / "doc" / "d2l-zh" / "tensorflow" / "data"
    empty.mkdir()
    p = plan(lab, "book", srcs=[str(study)])
    targets = {m.target: m.source for m in p.mounts}
    assert "/workspace/study/doc/d2l-zh/pytorch/data" not in targets
    assert targets["/workspace/study/doc/d2l-zh/tensorflow/data"] == lab.root / "data"
    assert p.src_dirs == []  # an empty folder is mounted over, not made
    assert [w for w in p.warnings if str(own) in w and "mv " in w]


def test_a_file_where_the_shared_folder_goes_is_left_with_a_warning(lab, study: Path) -> None:
    (study / "doc" / "d2l-zh" / "pytorch" / "data").write_text("not a folder")
    p = plan(lab, "book", srcs=[str(study)])
    assert "/workspace/study/doc/d2l-zh/pytorch/data" not in {m.target for m in p.mounts}
    assert any("not a folder" in w for w in p.warnings)
    assert p.src_dirs == [study / "doc" / "d2l-zh" / "tensorflow" / "data"]


def test_the_search_is_bounded_and_says_so(lab, study: Path, monkeypatch) -> None:
    from labctl.runtime import mounts

    monkeypatch.setattr(mounts, "MAX_FOLDERS", 3)
    p = plan(lab, "book", srcs=[str(study)])
    assert any("stopped looking" in w and "--src" in w for w in p.warnings)


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
    with raises_id("run.mount-above-workspace"):
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


def test_the_exports_mount_the_study_folder_as_run_does(lab, study: Path) -> None:
    from labctl.export import compose, devcontainer

    p = plan(lab, "book", srcs=[str(study)])
    doc = devcontainer.document(p, study, gpu=False)
    assert doc["workspaceMount"] == f"source={study},target=/workspace/study,type=bind"
    data = f"source={lab.root / 'data'},target=/workspace/study/doc/d2l-zh/pytorch/data"
    assert f"{data},type=bind" in doc["mounts"]
    assert not any(m.startswith(f"source={study}/") for m in doc["mounts"])  # no entries
    binds = {v["target"]: v["source"] for v in compose.service(p, False)["volumes"]}
    assert binds["/workspace/study"] == str(study)
    assert binds["/workspace/study/doc/d2l-zh/tensorflow/data"] == str(lab.root / "data")
    assert not any(t.startswith("/workspace/study/") and s.startswith(f"{study}/")
                   for t, s in binds.items())


def test_a_synced_study_folder_gets_its_mount_points_in_its_copy(lab, study: Path) -> None:
    from pathlib import PurePosixPath

    from labctl.runtime import remote

    there = remote.Remote("ssh://gpu-box", remote.Ssh("gpu-box"), 4321, 4322,
                          PurePosixPath("/home/ana"), PurePosixPath("/home/ana/labctl/lab"))
    p = plan(lab, "book", srcs=[str(study)], uid=4321, gid=4322)
    remote.place(p, lab, lab.spec("book"), there, [str(study)])
    # not made by path on the other machine: made here, so the copy carries them
    assert all(study in d.parents for d in p.src_dirs) and len(p.src_dirs) == 2
    assert not any(d in p.host_dirs for d in p.src_dirs)
    assert [h for h, _ in p.syncs] == [study]
    targets = {m.target: str(m.source) for m in p.mounts}
    assert targets["/workspace/study/doc/d2l-zh/pytorch/data"] == "/home/ana/labctl/lab/data"


def test_a_folder_that_is_no_book_gets_the_lab_data_only_over_an_empty_one(lab, tmp_path):
    """`labctl check`'s scratch folder: an empty data/ of its own, no chapters."""
    scratch = tmp_path / "scratch"
    (scratch / "data").mkdir(parents=True)
    p = plan(lab, "book", srcs=[str(scratch)])
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/workspace/scratch/data"] == lab.root / "data" and p.src_dirs == []
    plain = tmp_path / "plain"
    plain.mkdir()
    q = plan(lab, "book", srcs=[str(plain)])
    assert [m.target for m in q.mounts if m.target.startswith("/workspace/")] == \
        ["/workspace/plain"] and q.src_dirs == [] and not (plain / "data").exists()


def test_a_link_to_the_lab_data_is_mounted_over(lab, study: Path) -> None:
    """An absolute link would lead nowhere inside the lab: the engine mounts the lab's
    folder where it points, inside the container."""
    (lab.root / "data").mkdir(exist_ok=True)
    (lab.root / "data" / "x.csv").write_text("x")
    (study / "doc" / "d2l-zh" / "pytorch" / "data").symlink_to(lab.root / "data")
    p = plan(lab, "book", srcs=[str(study)])
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/workspace/study/doc/d2l-zh/pytorch/data"] == lab.root / "data"
    assert not any("already holds files" in w for w in p.warnings)
    assert p.src_dirs == [study / "doc" / "d2l-zh" / "tensorflow" / "data"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_a_book_level_the_learner_may_not_write_to_is_left_with_a_warning(lab, study):
    locked = study / "doc" / "d2l-zh" / "pytorch"
    locked.chmod(0o555)
    try:
        p = plan(lab, "book", srcs=[str(study)])
    finally:
        locked.chmod(0o755)
    assert "/workspace/study/doc/d2l-zh/pytorch/data" not in {m.target for m in p.mounts}
    assert any(f"mkdir {locked / 'data'}" in w for w in p.warnings)
    assert p.src_dirs == [study / "doc" / "d2l-zh" / "tensorflow" / "data"]


def test_the_learners_compat_and_verbose_asks_reach_the_env(lab) -> None:
    """--no-compat and --verbose are part of the request: the entrypoint reads them."""
    plain = plan(lab)
    assert "LABCTL_COMPAT" not in plain.env and "LABCTL_VERBOSE" not in plain.env
    asked = plan(lab, compat=False, verbose=True)
    assert asked.env["LABCTL_COMPAT"] == "off" and asked.env["LABCTL_VERBOSE"] == "1"
    assert asked.name == "labctl-nb" and asked.image == lab.image_tag("nb")
