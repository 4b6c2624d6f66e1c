"""How the engine gives containers the GPU, one detection for `labctl run` and doctor."""

from __future__ import annotations

from pathlib import Path

from labctl.gpu.access import mode, nvidia_cdi_specs


def test_cdi_folders_alone_are_no_gpu_runtime(tmp_path: Path) -> None:
    # Docker 28.2+ lists CDISpecDirs on every machine, GPU or not: folders (even with
    # other vendors' specs in them) are not an NVIDIA GPU.
    (tmp_path / "etc-cdi").mkdir()
    (tmp_path / "run-cdi").mkdir()
    (tmp_path / "run-cdi" / "vendor.yaml").write_text("kind: example.com/fpga\n")
    dirs = [str(tmp_path / "etc-cdi"), str(tmp_path / "run-cdi"), str(tmp_path / "missing")]
    assert nvidia_cdi_specs(dirs) == []
    assert mode([], nvidia_cdi_specs(dirs)) == "none"


def test_an_nvidia_cdi_spec_or_the_runtime_is(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert mode([], nvidia_cdi_specs([str(tmp_path)])) == "cdi"
    assert mode(["nvidia"], []) == "runtime"


def test_run_and_doctor_ask_the_same_function() -> None:
    import labctl.doctor.context as doctor_context
    import labctl.runtime.run as run
    from labctl.gpu import access

    assert run.gpu_mode is access.gpu_mode
    assert "labctl.gpu.access import gpu_mode" in Path(doctor_context.__file__).read_text()
