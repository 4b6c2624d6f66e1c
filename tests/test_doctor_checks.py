"""The doctor's pure parts: nvidia-smi parsing, permission arithmetic, the container GPU
rule, the image probe's parsing and the registry. No engine, no GPU."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from labctl.doctor.checks import containers, engine, image, lab
from labctl.doctor.checks.fs import can, folder_problem
from labctl.doctor.registry import Check, Finding, exit_code, run_checks
from labctl.gpu import probe as gpu

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nvidia-smi"


def read(case: str, name: str) -> str:
    return (FIXTURES / case / name).read_text()


# --- nvidia-smi parsing ---------------------------------------------------------------------
def test_parse_query_with_compute_cap() -> None:
    [g] = gpu.parse_query(read("rtx5070ti-570", "query.out"), cuda_max="12.8")
    assert g == gpu.Gpu(0, "NVIDIA GeForce RTX 5070 Ti Laptop GPU", "12.0", "570.133.07",
                        12227, "12.8", "nvidia-smi")


def test_parse_query_two_gpus() -> None:
    gs = gpu.parse_query(read("h100-570", "query.out"))
    assert [(g.index, g.cc, g.memory_mib) for g in gs] == [(0, "9.0", 81559), (1, "9.0", 81559)]


def test_parse_query_without_compute_cap_uses_the_name_table() -> None:
    [g] = gpu.parse_query(read("gtx1080-470", "query-nocc.out"), with_cc=False)
    assert (g.name, g.cc, g.cc_source, g.driver) == ("NVIDIA GeForce GTX 1080", "6.1",
                                                     "name table", "470.256.02")


@pytest.mark.parametrize(("case", "driver", "cuda"), [
    ("rtx5070ti-570", "570.133.07", "12.8"),
    ("h100-570", "570.124.06", "12.8"),
    ("gtx1080-470", "470.256.02", "11.4"),
    ("rtx4090-535", "535.183.01", "12.2"),
])
def test_parse_header(case: str, driver: str, cuda: str) -> None:
    assert gpu.parse_header(read(case, "header.out")) == (driver, cuda)


def test_header_without_cuda() -> None:
    assert gpu.parse_header("| NVIDIA-SMI 575.64.03  Driver Version: 575.64.03  "
                            "CUDA Version: N/A |") == ("575.64.03", None)


def test_error_texts() -> None:
    assert gpu.rejects_compute_cap(read("gtx1080-470", "query.out"))
    assert gpu.driver_failed(read("driver-failed", "all.out"))
    assert gpu.no_devices("No devices were found")
    assert not gpu.driver_failed(read("rtx5070ti-570", "header.out"))
    assert gpu.cuda_from_nvml(12080) == "12.8" and gpu.cuda_from_nvml(13000) == "13.0"


def replay(case: str):
    """A runner that answers like the fake nvidia-smi, without a subprocess."""
    def run(cmd: list[str]) -> tuple[int, str]:
        args = " ".join(cmd[1:])
        name = "query" if "compute_cap" in args else "query-nocc" if "--query" in args \
            else "header"
        folder = FIXTURES / case
        if not (folder / f"{name}.out").exists():
            name = "all"
        rc_file = folder / f"{name}.rc"
        return (int(rc_file.read_text()) if rc_file.exists() else 0,
                (folder / f"{name}.out").read_text())
    return run


def test_probe_470_falls_back_to_the_name_table() -> None:
    p = gpu.probe_smi(run=replay("gtx1080-470"))
    assert p.source == "nvidia-smi" and p.driver == "470.256.02" and p.cuda_max == "11.4"
    assert [(g.name, g.cc, g.cc_source) for g in p.gpus] == [
        ("NVIDIA GeForce GTX 1080", "6.1", "name table")]
    assert "compute_cap" in p.notes[0]


def test_probe_driver_failed_is_a_problem_not_an_exception() -> None:
    p = gpu.probe_smi(run=replay("driver-failed"))
    assert p.gpus == () and p.problem and "couldn't communicate" in p.problem


def test_probe_without_nvidia_smi() -> None:
    def missing(cmd: list[str]) -> tuple[int, str]:
        raise FileNotFoundError(cmd[0])

    p = gpu.probe_smi(run=missing)
    assert p.gpus == () and p.problem is None and p.source == "none"


def test_probe_timeout() -> None:
    def slow(cmd: list[str]) -> tuple[int, str]:
        raise subprocess.TimeoutExpired(cmd, 15)

    assert "did not answer" in (gpu.probe_smi(run=slow).problem or "")


def test_probe_without_nvml_library_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "NVML_LIB", "libdoes-not-exist.so.1")
    assert gpu.probe_nvml() is None


# --- permissions -----------------------------------------------------------------------------
def test_mode_bits() -> None:
    assert can(0o755, 1000, 1000, 1000, {1000}, "rwx")
    assert not can(0o755, 0, 0, 1000, {1000}, "w")
    assert can(0o775, 0, 999, 1000, {999}, "rw")  # through the group
    assert can(0o660, 0, 999, 0, set(), "rw")  # root
    assert not can(0o660, 0, 999, 1000, {1000}, "r")


def test_root_owned_folder_fails_with_chown(tmp_path: Path) -> None:
    root_owned = Path("/usr")  # owned by root on every Linux
    what, fix = folder_problem(root_owned, uid=1000, gids={1000}) or ("", "")
    assert "owned by root" in what
    assert fix == "sudo chown -R $(id -u):$(id -g) /usr"


def test_own_folder_and_missing_folder_are_fine(tmp_path: Path) -> None:
    uid, gids = os.getuid(), {os.getgid(), *os.getgroups()}
    assert folder_problem(tmp_path, uid, gids) is None
    assert folder_problem(tmp_path / "new" / "deeper", uid, gids) is None


def test_missing_folder_under_a_root_folder(tmp_path: Path) -> None:
    what, fix = folder_problem(Path("/usr/labctl-missing/data"), 1000, {1000}) or ("", "")
    assert "does not exist" in what and fix.startswith("sudo mkdir -p /usr/labctl-missing/data")


def test_a_file_where_a_folder_should_be(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("x")
    assert "not a folder" in (folder_problem(f, os.getuid(), set()) or ("",))[0]


def test_socket_permission(tmp_path: Path) -> None:
    sock_path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        os.chmod(sock_path, 0o660)
        st = sock_path.stat()
        ok = engine.socket_finding(sock_path, 4242, {st.st_gid}, connected=False)
        assert ok.status == "ok" and "through group" in ok.message
        bad = engine.socket_finding(sock_path, 4242, {4242}, connected=False)
        if st.st_uid != 4242:
            assert bad.status == "fail" and "usermod -aG docker" in bad.fix
    finally:
        s.close()
    gone = engine.socket_finding(tmp_path / "nope.sock", 1000, set(), connected=False)
    assert gone.status == "fail" and "systemctl start docker" in gone.fix


def test_disk_thresholds() -> None:
    gb = 1000**3
    assert engine.disk_finding("/var/lib/docker", 5 * gb, 100 * gb).status == "fail"
    assert engine.disk_finding("/var/lib/docker", 20 * gb, 100 * gb).status == "warn"
    ok = engine.disk_finding("/var/lib/docker", 80 * gb, 271 * gb)
    assert ok.status == "ok" and ok.message == "80.0 GB free of 271 GB under /var/lib/docker"


def test_shm() -> None:
    assert lab.shm_finding(64 * 1024**2, 64 * 1024**2).status == "warn"
    assert lab.shm_finding(8 * 1000**3, 8 * 1000**3).status == "ok"


def test_port_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not lab.port_free("127.0.0.1", port)
    assert lab.port_free("127.0.0.1", port)


# --- GPU in containers -------------------------------------------------------------------------
def test_container_gpu_rules(tmp_path: Path) -> None:
    f = containers.container_gpu_finding
    assert f(["nvidia"], [], [], [], True, False).status == "ok"
    assert f([], ["/etc/cdi"], ["/etc/cdi/nvidia.yaml"], [], True, False).status == "ok"
    cdi = f([], ["/etc/cdi", "/var/run/cdi"], [], [], True, False)
    assert cdi.status == "fail" and containers.CDI_FIX in cdi.fix
    none = f([], [], [], [], True, False)
    assert none.status == "fail" and none.fix == containers.RUNTIME_FIX
    assert f([], [], [], [], False, False).fix.startswith("install the NVIDIA Container Toolkit")
    unread = f([], [], [], ["/etc/cdi/nvidia.yaml"], True, False)
    assert "does not read them" in unread.message
    assert "no-cgroups" in f(["nvidia"], [], [], [], True, True).message


def test_nvidia_cdi_specs(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    (tmp_path / "other.yaml").write_text("kind: vendor.com/fpga\n")
    (tmp_path / "notes.txt").write_text("nvidia.com/gpu")
    assert containers.nvidia_cdi_specs([str(tmp_path), "/nonexistent"]) == [
        str(tmp_path / "nvidia.yaml")]


# --- the image probe ----------------------------------------------------------------------------
PROBE_OUT = (
    "LABCTL_LDD ldd (Debian GLIBC 2.36-9+deb12u7) 2.36\n"
    'LABCTL_PROBE {"python": "3.11.2", "libc": ["glibc", "2.36"], "torch": "2.10.0+cu128", '
    '"cuda": "12.8", "archs": ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", '
    '"sm_120"], "available": true, "devices": ["NVIDIA GeForce RTX 5070 Ti Laptop GPU"], '
    '"warnings": []}\n'
)


def test_parse_probe() -> None:
    facts = image.parse_probe(PROBE_OUT)
    assert facts.glibc == (2, 36) and facts.torch == "2.10.0+cu128" and facts.python == "3.11.2"


@pytest.mark.parametrize(("line", "want"), [
    ("ldd (Debian GLIBC 2.36-9+deb12u7) 2.36", (2, 36)),
    ("ldd (Ubuntu GLIBC 2.35-0ubuntu3.8) 2.35", (2, 35)),
    ("ldd (GNU libc) 2.17", (2, 17)),
    ("musl libc (x86_64)", None),
    ("", None),
])
def test_parse_glibc(line: str, want: tuple[int, int] | None) -> None:
    assert image.parse_glibc(line) == want


def test_glibc_findings() -> None:
    assert image.glibc_finding(image.parse_probe(PROBE_OUT)).status == "ok"
    old = image.parse_probe("LABCTL_LDD ldd (GNU libc) 2.17\n")
    assert image.glibc_finding(old).status == "fail"
    musl = image.parse_probe("LABCTL_LDD musl libc (x86_64)\n")
    assert image.glibc_finding(musl).status == "warn"


def test_torch_findings_on_blackwell() -> None:
    from dataclasses import replace

    from labctl.config.spec import load_spec

    spec = load_spec("yolo-gpu", Path(__file__).resolve().parent.parent / "images")
    g = gpu.Gpu(0, "NVIDIA GeForce RTX 5070 Ti Laptop GPU", "12.0", "570.133.07", 12227, "12.8")
    found = dict(image.torch_findings(image.parse_probe(PROBE_OUT), spec, "yolo-gpu", (g,),
                                      True, ""))
    assert found["torch"].status == "ok"
    assert found["gpu0"].status == "ok"
    assert found["cuda"].status == "ok" and "5070 Ti" in found["cuda"].message
    old = image.parse_probe(PROBE_OUT.replace('"torch": "2.10.0+cu128", "cuda": "12.8"',
                                              '"torch": "2.0.0+cu117", "cuda": "11.7"')
                            .replace('"sm_70", ', '"sm_37", ').replace(', "sm_120"', ""))
    facts = dict(image.torch_findings(old, spec, "yolo-gpu", (replace(g),), True, ""))
    assert facts["torch"].status == "warn" and "out of date" in facts["torch"].message
    assert facts["gpu0"].status == "fail"


TF_PROBE = ('LABCTL_PROBE {"python": "3.11.2", "libc": ["glibc", "2.36"], "error": "ModuleNotFoun'
            'dError: No module named \'torch\'", "tensorflow": {"version": "2.21.0", "cuda": '
            '"12.5.1", "archs": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"], "gpus": []}}')


def test_tf_findings_from_the_wheels_own_build_info() -> None:
    from labctl.config.spec import load_spec

    shipped = Path(__file__).resolve().parent.parent / "images"
    blackwell = gpu.Gpu(0, "NVIDIA GeForce RTX 5070 Ti", "12.0", "570.133.07", 16303, "12.8")
    facts = image.parse_probe(TF_PROBE)
    found = dict(image.tf_findings(facts, load_spec("tf-gpu", shipped), (blackwell,), True))
    assert "CUDA 12.5.1, sm_60, sm_70, sm_80, sm_89, compute_90" in found["tf"].message
    assert found["tf-gpu0"].status == "fail" and "needs CUDA >= 12.8" in found["tf-gpu0"].message
    assert found["tf-cuda"].status == "fail"  # the GPU was attached and TF saw none
    # the CPU lab's TensorFlow is not asked about GPUs
    assert image.tf_findings(facts, load_spec("tf", shipped), (blackwell,), True) == []
    torch_rows = dict(image.torch_findings(facts, load_spec("tf", shipped), "tf", (), False, ""))
    assert torch_rows["torch"].status == "ok" and "no torch" in torch_rows["torch"].message


# --- the registry --------------------------------------------------------------------------------
def test_a_crashing_check_is_a_failure_not_a_traceback() -> None:
    def boom(ctx: object) -> Finding:
        raise RuntimeError("kaput")

    def many(ctx: object) -> list[Finding]:
        return [Finding("ok", "a", subject="GPU 0"), Finding("skip", "b", subject="x y")]

    results = run_checks(None, [Check("t.boom", "lab", "boom", boom),  # type: ignore[arg-type]
                                Check("t.many", "engine", "many", many)])
    assert [r.id for r in results] == ["t.many.gpu-0", "t.many.x-y", "t.boom"]  # by area
    assert results[2].status == "fail" and "kaput" in results[2].message
    assert exit_code(results) == 1
    assert exit_code(results[:2]) == 0


def test_probe_nvml_maps_the_library_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NVML path with a stand-in pynvml (this machine has no libnvidia-ml)."""
    import types

    class NVMLError(Exception):
        pass

    calls: list[str] = []
    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: "570.133.07",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 12080,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetName=lambda h: b"NVIDIA GeForce RTX 5070 Ti Laptop GPU",
        nvmlDeviceGetCudaComputeCapability=lambda h: (12, 0),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=12227 * 1024 * 1024),
    )
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    monkeypatch.setattr(gpu, "NVML_LIB", "libc.so.6")  # any library that loads
    p = gpu.probe_nvml()
    assert p is not None and p.source == "nvml" and p.cuda_max == "12.8"
    assert p.gpus == (gpu.Gpu(0, "NVIDIA GeForce RTX 5070 Ti Laptop GPU", "12.0", "570.133.07",
                              12227, "12.8", "nvml"),)
    assert calls == ["init", "shutdown"]
    monkeypatch.setenv(gpu.NO_NVML_ENV, "1")
    monkeypatch.setattr(gpu, "probe_smi", lambda: gpu.Probe(source="none"))
    assert gpu.probe().source == "none"  # LABCTL_NO_NVML forces the nvidia-smi path


@pytest.mark.parametrize(("output", "status", "words"), [
    ("LABCTL_LDD ldd (Debian GLIBC 2.36-9+deb12u7) 2.36\nLABCTL_TOOL tar yes\n"
     "LABCTL_TOOL bash yes\nLABCTL_HOME /home/lab lab\n", "ok", "can attach"),
    ("LABCTL_LDD ldd (Ubuntu GLIBC 2.27-3ubuntu1) 2.27\nLABCTL_TOOL tar yes\n"
     "LABCTL_TOOL bash yes\nLABCTL_HOME /home/lab lab\n", "fail", "glibc 2.27"),
    ("LABCTL_LDD ldd (Debian GLIBC 2.36) 2.36\nLABCTL_TOOL tar no\nLABCTL_TOOL bash yes\n"
     "LABCTL_HOME /home/lab root\n", "fail", "no tar"),
    ("LABCTL_LDD ldd (Debian GLIBC 2.36) 2.36\nLABCTL_TOOL tar no\nLABCTL_TOOL bash no\n"
     "LABCTL_HOME /home/lab nobody\n", "fail", "no bash; no tar; /home/lab belongs to nobody"),
    ("LABCTL_LDD musl libc (x86_64)\nLABCTL_TOOL tar yes\nLABCTL_TOOL bash yes\n"
     "LABCTL_HOME - -\n", "fail", "no user 'lab'"),
])
def test_vscode_attach_needs(output: str, status: str, words: str) -> None:
    f = image.vscode_finding(image.parse_probe(output))
    assert f.status == status and words in f.message, f
