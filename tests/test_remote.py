"""A lab's plan for an engine of another machine, without an engine: where its folders go
there, which --src values are refused, the --sync volumes and the forward's URL."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from conftest import tar_bytes, write_lab

from labctl.config.lab import load_lab
from labctl.errors import LabError
from labctl.runtime import remote
from labctl.runtime.plan import LAB_UID, HostFacts, RunRequest, parse_remote_src, plan_run

SPECS = {
    "nb": "pip: [jupyterlab]\njupyter: {enabled: true, port: 8888}\nvolumes: [data, cache]\n",
    "book": "volumes: [data]\nsrc_volumes: {data: data}\n",
}
THERE = remote.Remote("ssh://gpu-box", remote.Ssh("gpu-box"), 4321, 4322,
                      PurePosixPath("/home/ana"), PurePosixPath("/home/ana/labctl/lab"))


@pytest.fixture
def lab(tmp_path: Path):
    return load_lab(str(write_lab(tmp_path / "lab", SPECS)), environ={})


def plan(lab, name="nb", srcs=(), there=(), token_file=None):
    return plan_run(
        lab, lab.spec(name),
        RunRequest(user=True, srcs=tuple(srcs), gpus="none", bind="127.0.0.1", token="tok",
                   token_file=token_file, there=tuple(there)),
        HostFacts(uid=THERE.uid, gid=THERE.gid, home=Path.home(), rootless=False,
                  gpu_access="none", has_ipv6_loopback=False, port_free=lambda ip, p: True,
                  name_taken=lambda n: False))


def test_the_lab_folders_are_the_remote_lab_folders(lab) -> None:
    token = lab.state_dir("tokens") / "t.token"
    token.write_text("tok")
    p = plan(lab, token_file=token)
    remote.place(p, lab, lab.spec("nb"), THERE, [])
    sources = {m.target: str(m.source) for m in p.mounts}
    assert sources["/data"] == "/home/ana/labctl/lab/data"
    assert sources["/workspace/work"] == "/home/ana/labctl/lab/work"
    assert all(str(d).startswith("/home/ana/labctl/lab/") for d in p.host_dirs)
    assert str(p.token_file).startswith("/home/ana/labctl/lab/.labctl/tokens/")
    # its owner is the learner's login there (students share a server's engine)
    assert p.env["LABCTL_UID"] == "4321" and p.labels["org.labctl.owner"] == "4321"


def test_home_folders_map_to_the_remote_home() -> None:
    home = Path.home()
    assert remote.rebase(home / ".cache/x", Path("/elsewhere"), home, THERE) == \
        Path("/home/ana/.cache/x")
    assert remote.rebase(Path("/srv/shared"), Path("/elsewhere"), home, THERE) == \
        Path("/srv/shared")


def test_a_local_src_is_refused_with_the_two_ways_that_work() -> None:
    with pytest.raises(LabError) as e:
        remote.split_srcs(["./book"], sync=False)
    assert "remote:" in e.value.fix and "--sync" in e.value.fix
    assert remote.split_srcs(["./book", "remote:/srv/b"], sync=True) == (["./book"],
                                                                         ["/srv/b"])


def test_remote_src_values_are_validated(lab) -> None:
    spec = lab.spec("nb")
    assert parse_remote_src("/home/ana/d2l-zh", spec).target == "/workspace/d2l-zh"
    assert parse_remote_src("/home/ana/b:/workspace/x", spec).target == "/workspace/x"
    for bad in ("/etc", "relative/path", "/home/ana/b:/etc/x", "/home/a/../../etc"):
        with pytest.raises(LabError):
            parse_remote_src(bad, spec)
    p = plan(lab, there=["/home/ana/d2l-zh"])
    assert p.workdir == "/workspace/d2l-zh"
    assert not any(m.target == "/workspace/work" for m in p.mounts)


def test_a_synced_folder_is_one_volume_and_its_inner_mounts_give_way(lab, tmp_path) -> None:
    book = tmp_path / "d2l-zh"
    (book / "chapter_preliminaries").mkdir(parents=True)
    (book / "data").mkdir()
    p = plan(lab, "book", srcs=[str(book)])
    remote.place(p, lab, lab.spec("book"), THERE, [str(book)])
    volumes = [m for m in p.mounts if m.volume]
    assert [m.target for m in volumes] == ["/workspace/d2l-zh"]
    assert p.syncs == [(book.resolve(), str(volumes[0].source))]
    assert not any(str(m.source).startswith(str(tmp_path)) for m in p.mounts)
    assert "org.labctl.sync" in p.labels


def test_sync_packs_as_the_lab_user_and_unpacks_without_escaping(tmp_path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    with tarfile.open(fileobj=io.BytesIO(b"".join(remote.pack(src, LAB_UID, LAB_UID)))) as tar:
        assert {m.uid for m in tar} == {LAB_UID}
    # as the engine sends a volume back
    back = tar_bytes([("sync/sub/a.txt", b"changed"), ("sync/new.txt", b"new"),
                      ("sync/../../evil.txt", b"x")], [("sync/link", "/etc/passwd")])
    dest = tmp_path / "dest"
    (dest / "kept.txt").parent.mkdir()
    (dest / "kept.txt").write_text("kept")
    assert remote.unpack(iter([back]), dest) == 2
    assert (dest / "sub" / "a.txt").read_text() == "changed"
    assert (dest / "new.txt").read_text() == "new" and (dest / "kept.txt").exists()
    assert not (tmp_path / "evil.txt").exists() and not (dest / "link").exists()


def test_the_url_through_the_forward(lab) -> None:
    p = plan(lab)
    p.forward_port = 40001
    assert p.url == "http://127.0.0.1:40001/lab?token=tok"
    assert remote.ssh_of("ssh://ana@gpu-box:2222") == remote.Ssh("gpu-box", "ana", 2222)
    assert remote.ssh_of("tcp://gpu-box:2376") is None
    assert remote.Ssh("gpu-box", "ana", 2222).args() == ["-l", "ana", "-p", "2222", "--",
                                                         "gpu-box"]
