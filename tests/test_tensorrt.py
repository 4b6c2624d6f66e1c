"""TensorRT: the release table, the spec opt-in and what doctor says about this GPU, driver
and image. Pure: no engine and no GPU. The expectations restate the sources in
labctl/tables/tensorrt.yaml's header (Blackwell from 10.8, Volta until 10.4, r535 for 10.16),
so a wrong row fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compat import GTX1080_470, H100, RTX4090_535, RTX5070TI, G
from test_render import _instructions, fixed_lab, render_spec

from labctl.doctor.checks.image import parse_probe, trt_findings
from labctl.errors import LabError
from labctl.gpu import tensorrt
from labctl.gpu.probe import Gpu
from labctl.gpu.tables import tensorrt as table

YOLO_TRT = "extends: yolo-gpu\ntensorrt: {value}\n"


def lab_with(tmp_path: Path, **specs: str):
    return fixed_lab(tmp_path / "lab", specs=specs)


def test_every_release_row_is_well_formed() -> None:
    t = table()
    names = [r.tensorrt for r in t.releases]
    assert len(names) == len(set(names)) and t.default in names
    for r in t.releases:
        assert r.pip.startswith(r.tensorrt + "."), r  # the pin is of its own minor
        assert r.ccs in t.cc_sets, r
    assert tensorrt.release("default") == tensorrt.release(t.default)
    assert tensorrt.release("10.16.1.11") == tensorrt.release("10.16")  # its exact pin
    for vague in ("9.2", "10", "10.16.0", "10.16.1"):  # no row, rather than a guess
        assert tensorrt.release(vague) is None, vague
    assert tensorrt.release_of("10.16.0.72") == tensorrt.release("10.16")  # in an image


@pytest.mark.parametrize(("cc", "newest"), [
    ("12.0", "10.16"),  # RTX 50xx: from 10.8 on
    ("10.0", "10.16"),  # B200 (early access in 10.8)
    ("8.9", "10.16"), ("7.5", "10.16"),
    ("7.0", "10.4"),  # Volta: deprecated in 10.0, removed in 10.5
    ("6.1", None),  # Pascal: no TensorRT 10
    ("12.1", None),  # GB10: named by no 10.x note
])
def test_the_newest_release_for_each_gpu(cc: str, newest: str | None) -> None:
    found = tensorrt.fitting(cc)
    assert (found[0].tensorrt if found else None) == newest


def test_blackwell_comes_with_10_8() -> None:
    assert not tensorrt.supports(tensorrt.release("10.7"), "12.0")
    assert tensorrt.supports(tensorrt.release("10.8"), "12.0")
    assert tensorrt.supports(tensorrt.release("10.4"), "7.0")
    assert not tensorrt.supports(tensorrt.release("10.5"), "7.0")


def test_the_driver_is_the_higher_of_the_release_and_the_gpu() -> None:
    r108, r1016 = tensorrt.release("10.8"), tensorrt.release("10.16")
    assert tensorrt.min_driver(r108, "8.9") == "525.60.13"  # CUDA 12's compat floor
    assert tensorrt.min_driver(r1016, "8.9") == "535"  # stated by 10.16
    assert tensorrt.min_driver(r108, "12.0") == "570.26"  # Blackwell needs CUDA 12.8's


def test_pins_every_package_at_one_version() -> None:
    assert tensorrt.requirements(tensorrt.release("10.16")) == [
        "tensorrt-cu12==10.16.1.11", "tensorrt-cu12-libs==10.16.1.11",
        "tensorrt-cu12-bindings==10.16.1.11"]


def _verdict(tmp_path: Path, value: str, gpu: G):
    lab = lab_with(tmp_path, t=YOLO_TRT.format(value=value))
    return tensorrt.verdict(lab.spec("t"), gpu)


def test_verdicts_on_the_gpus_learners_have(tmp_path: Path) -> None:
    v = _verdict(tmp_path, "true", RTX5070TI)
    assert v.status == "ok" and "TensorRT 10.16 (10.16.1.11) supports CC 12.0" in v.message
    v = _verdict(tmp_path, '"10.7"', RTX5070TI)
    assert v.status == "fail" and "has no code for CC 12.0 (Blackwell)" in v.message
    assert v.fix == 'set tensorrt: "10.16" in images/t.yaml'
    v = _verdict(tmp_path, "true", GTX1080_470)
    assert v.status == "fail" and "remove tensorrt: from images/t.yaml" in v.fix
    assert "onnxruntime" in v.fix
    assert _verdict(tmp_path, '"10.7"', H100).status == "ok"
    # 10.16 states r535; an Ada card on 530 is short, on 535 fine; 10.8 states nothing
    old = G("NVIDIA GeForce RTX 4090", "8.9", "530.41.03", "12.1")
    v = _verdict(tmp_path, "true", old)
    assert v.status == "fail" and "needs driver >= 535, this one is 530.41.03" in v.message
    assert "nvidia-driver-535" in v.fix
    assert _verdict(tmp_path, "true", RTX4090_535).status == "ok"
    assert _verdict(tmp_path, '"10.8"', old).status == "ok"


def test_without_the_key_doctor_says_whether_it_would_work(tmp_path: Path) -> None:
    lab = lab_with(tmp_path, py314='extends: yolo-gpu\npython: "3.14"\n')
    v = tensorrt.verdict(lab.spec("yolo-gpu"), RTX5070TI)
    assert v.status == "ok" and "not in this image" in v.message
    assert "can use TensorRT 10.16: add tensorrt: true to images/yolo-gpu.yaml" in v.message
    v = tensorrt.verdict(lab.spec("yolo-gpu"), GTX1080_470)
    assert "no TensorRT 10 release supports CC 6.1 (Pascal)" in v.message
    assert "onnxruntime" in v.message
    # Volta: the last release that has it, by name (true would be 10.16, which has not)
    v100 = G("Tesla V100-SXM2-16GB", "7.0", "570.124.06", "12.8")
    assert 'can use TensorRT 10.4: add tensorrt: "10.4"' in tensorrt.verdict(
        lab.spec("yolo-gpu"), v100).message
    # a driver short of 10.16's r535: the newest that runs on it now, and what waits
    old = G("NVIDIA GeForce RTX 4090", "8.9", "530.41.03", "12.1")
    v = tensorrt.verdict(lab.spec("yolo-gpu"), old)
    assert "can use TensorRT 10.15 (TensorRT 10.16 once the driver is >= 535): add " \
        'tensorrt: "10.15"' in v.message
    # a spec that could not have it is told why, not to add it
    v = tensorrt.verdict(lab.spec("py314"), RTX5070TI)
    assert "this spec cannot have it" in v.message and "Python 3.8-3.13" in v.message
    assert "add tensorrt" not in v.message


@pytest.mark.parametrize(("spec", "words", "fix"), [
    (YOLO_TRT.format(value='"9.2"'), "tensorrt: '9.2' is not a TensorRT release",
     "or write tensorrt: true (= 10.16)"),
    ("extends: yolo-cpu\ntensorrt: true\n", "this spec says gpu: false (images/yolo-cpu.yaml:",
     "extends: yolo-gpu"),
    ("torch: {version: '2.10.0', variant: cpu}\ntensorrt: true\n",
     "needs CUDA, and this spec's torch has none", "remove tensorrt:"),
    ("extends: yolo-gpu\ntorch: {version: '2.11.0', variant: default,"
     " packages: ['torchvision==0.26.0']}\ngpu: {cuda: '13.0'}\ntensorrt: true\n",
     "this spec's torch bundles CUDA 13.0", "variant: cu128"),
    ('extends: yolo-gpu\npython: "3.14"\ntensorrt: true\n',
     "has wheels for Python 3.8-3.13, and the spec has python: 3.14", 'set python: "3.13"'),
])
def test_a_spec_that_cannot_have_it_is_refused_at_its_line(
        tmp_path: Path, spec: str, words: str, fix: str) -> None:
    lab = lab_with(tmp_path, t=spec)
    with pytest.raises(LabError) as e:
        render_spec(lab, "t")
    line = spec.splitlines().index(next(ln for ln in spec.splitlines()
                                        if ln.startswith("tensorrt:"))) + 1
    assert e.value.message.startswith(f"images/t.yaml:{line}: ")
    assert words in e.value.message and fix in (e.value.fix or "")


def test_an_unquoted_version_is_refused_with_the_hint(tmp_path: Path) -> None:
    lab = lab_with(tmp_path, t=YOLO_TRT.format(value="10.10"))  # YAML reads 10.1
    with pytest.raises(LabError) as e:
        lab.spec("t")
    assert "tensorrt" in str(e.value) and 'tensorrt: \\"10.16\\"' not in str(e.value)
    assert 'tensorrt: "10.16"' in (e.value.fix or "")


@pytest.mark.parametrize("backend", ["classic", "buildkit"])
def test_the_layer_sits_after_torch_and_shares_it(tmp_path: Path, backend: str) -> None:
    # two unlocked specs (a lock pins torch's own dependencies into its layer)
    lab = lab_with(tmp_path, t=YOLO_TRT.format(value="true"), u="extends: yolo-gpu\n")
    with_trt, without = render_spec(lab, "t"), render_spec(lab, "u")

    def lines(ctx) -> list[str]:
        text = ctx.dockerfile if backend == "classic" else ctx.buildkit_dockerfile
        return [i for i in _instructions(text) if not i.startswith("#")]

    a, b = lines(with_trt), lines(without)
    torch_end = next(i for i, x in enumerate(b) if "requirements-torch.txt" in x
                     and x.startswith("RUN"))
    assert a[:torch_end + 1] == b[:torch_end + 1]  # the torch layer is the same layer
    keys = with_trt.step_keys()
    assert keys.index("torch") < keys.index("tensorrt") < keys.index("fonts")
    install = next(x for x in a if "requirements-tensorrt.txt" in x and x.startswith("RUN"))
    assert "--extra-index-url https://pypi.nvidia.com" in install
    assert with_trt.files["labctl/requirements-tensorrt.txt"].decode().split() == \
        tensorrt.requirements(tensorrt.release("10.16"))
    assert "labctl/requirements-tensorrt.txt" not in without.files


def _probe(**trt: object) -> str:
    data = {"python": "3.11.2", "libc": ["glibc", "2.36"], "torch": "2.10.0+cu128",
            "cuda": "12.8", "archs": ["sm_120"], "available": True}
    if trt:
        data["tensorrt"] = trt
    return "LABCTL_PROBE " + json.dumps(data)


def test_the_image_check_reads_what_tensorrt_said(tmp_path: Path) -> None:
    lab = lab_with(tmp_path, t=YOLO_TRT.format(value="true"))
    spec, plain = lab.spec("t"), lab.spec("yolo-gpu")

    def gpu(i: int, g: G) -> Gpu:
        return Gpu(i, g.name, g.cc, g.driver, None, g.cuda_max)

    def one(text: str, s, gpus=(RTX5070TI,), attached=True):
        found = trt_findings(parse_probe(text), s, "t",
                             tuple(gpu(i, g) for i, g in enumerate(gpus)), attached)
        return [(k, f.status, f.message) for k, f in found]

    assert one(_probe(), plain) == []  # no TensorRT, none asked for: nothing to say
    [(key, status, msg)] = one(_probe(), spec)
    assert status == "fail" and "the image has none" in msg
    [(key, status, msg)] = one(_probe(version="10.16.1.11", builder=True), spec)
    assert key == "tensorrt-gpu0" and status == "ok" and "made an engine builder" in msg
    [(_, status, msg)] = one(_probe(version="10.16.1.11"), spec)  # torch saw no GPU
    assert status == "ok" and "not tried (torch sees no GPU)" in msg
    [(_, status, msg)] = one(_probe(version="10.7.0.post1"), spec)
    assert status == "fail" and "has no code for" in msg and "CC 12.0" in msg
    [(_, status, msg)] = one(_probe(version="10.16.1.11", error="RuntimeError: CUDA init"),
                             spec)
    assert status == "fail" and "CUDA init" in msg
    [(_, status, msg)] = one(_probe(version="10.16.1.11"), spec, attached=False)
    assert status == "ok" and "not tried (no GPU attached)" in msg
    [(_, status, msg)] = one(_probe(error="ImportError: libnvinfer.so.10"), spec)
    assert status == "fail" and "import tensorrt failed" in msg
    [(_, status, _msg)] = one(_probe(version="10.16.1.11"), spec, gpus=(H100, GTX1080_470))[1:]
    assert status == "fail"  # Pascal
