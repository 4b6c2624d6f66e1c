"""The genai lab without an engine: its spec and lock, Hugging Face names and the shared
cache, the mirror setting in the lab and in labctl's downloads, and what fits in a GPU's
memory (`labctl doctor --model`) from a repository's index or config."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, write_lab

from labctl.config import lockfile
from labctl.config.lab import load_lab
from labctl.config.spec import load_spec
from labctl.data import hf
from labctl.errors import LabError
from labctl.gpu import model_memory as mm
from labctl.gpu.probe import probe_smi
from labctl.runtime.plan import HostFacts, RunRequest, plan_run

FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
NB = "pip: [jupyterlab]\njupyter: {enabled: true, port: 8888}\nvolumes: [data, cache]\n"


# --- the shipped spec ----------------------------------------------------------------------
def test_genai_spec_shares_the_torch_layer_and_is_locked() -> None:
    genai, d2l = load_spec("genai", REPO / "images"), load_spec("d2l", REPO / "images")
    assert genai.torch == d2l.torch  # one multi-GB torch layer on disk for both
    names = {p.split(">")[0].split("=")[0].split("<")[0] for p in genai.lab_packages}
    assert {"transformers", "diffusers", "accelerate", "safetensors", "sentencepiece",
            "datasets", "open_clip_torch", "gradio", "huggingface_hub", "jupyterlab",
            "jupyter-server-proxy"} <= names
    assert "cache" in genai.volumes and 7860 not in genai.ports  # Gradio: through Jupyter
    assert {c.name for c in genai.checks} >= {"tiny-llm", "tiny-diffusion", "gradio"}
    for c in genai.checks:
        assert (REPO / "images" / c.script).is_file(), c.script
    lock = lockfile.read_lock(REPO / "images" / "genai.lock", "genai")
    assert lockfile.state(genai, lock) == "locked"
    d2l_lock = lockfile.read_lock(REPO / "images" / "d2l.lock", "d2l")
    assert lock is not None and d2l_lock is not None
    assert [p.constraint() for p in lock.sections["torch"]] == [
        p.constraint() for p in d2l_lock.sections["torch"]]


# --- hf: names -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "repo", "kind", "rev"), [
    ("hf:Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "model", "main"),
    ("hf:gpt2", "gpt2", "model", "main"),
    ("hf:org/name@v1.0", "org/name", "model", "v1.0"),
    ("hf:org/name@refs/pr/3", "org/name", "model", "refs/pr/3"),
    ("hf:datasets/org/data", "org/data", "dataset", "main"),
])
def test_parse_ref(text: str, repo: str, kind: str, rev: str) -> None:
    ref = hf.parse_ref(text)
    assert (ref.repo_id, ref.repo_type, ref.revision) == (repo, kind, rev)
    assert hf.parse_ref(ref.name) == ref


@pytest.mark.parametrize("text", ["hf:", "hf:../../etc", "hf:a/b/c", "hf:org/na me",
                                  "hf:org/name@../x", "hf:org/-name", "hf:org--x/y",
                                  "hf:org/name@", "hf:/abs"])
def test_parse_ref_refuses(text: str) -> None:
    with pytest.raises(LabError, match="not a Hugging Face repository"):
        hf.parse_ref(text)


# --- the lab's settings ----------------------------------------------------------------------
def test_hub_cache_is_the_labs_hf_home(tmp_path: Path) -> None:
    lab = load_lab(str(write_lab(tmp_path / "lab", {})), environ={})
    assert hf.hub_cache(lab) == lab.root / "cache" / "huggingface" / "hub"
    assert hf.endpoints(lab) == [hf.HUB]


def test_hf_endpoint_from_settings_or_environment(tmp_path: Path) -> None:
    root = write_lab(tmp_path / "lab", {"nb": NB},
                     "network:\n  hf_endpoint: https://hf-mirror.com/\n")
    lab = load_lab(str(root), environ={"HF_ENDPOINT": "https://other.example"})
    assert lab.settings.network.hf_endpoint == "https://hf-mirror.com/"  # labctl.yaml first
    assert hf.endpoints(lab) == ["https://hf-mirror.com", hf.HUB]
    root2 = write_lab(tmp_path / "lab2", {"nb": NB})
    lab2 = load_lab(str(root2), environ={"HF_ENDPOINT": "https://other.example"})
    assert lab2.settings.network.hf_endpoint == "https://other.example"
    with pytest.raises(LabError) as bad:
        load_lab(str(root2), environ={"HF_ENDPOINT": "not a url"})
    assert "HF_ENDPOINT" in str(bad.value.details) + (bad.value.fix or "")


def _plan(lab, **kw):
    host = HostFacts(uid=1234, gid=2345, home=Path("/nonexistent-home"), rootless=False,
                     gpu_access="none", has_ipv6_loopback=True, port_free=lambda ip, p: True,
                     name_taken=lambda n: False)
    return plan_run(lab, lab.spec("nb"),
                    RunRequest(**{"user": True, "bind": "127.0.0.1", "token": "tok", **kw}), host)


def test_run_plan_gets_the_mirror_and_offline(tmp_path: Path, monkeypatch) -> None:
    root = write_lab(tmp_path / "lab", {"nb": NB},
                     "network:\n  hf_endpoint: https://hf-mirror.com\n")
    lab = load_lab(str(root), environ={})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    p = _plan(lab)
    assert p.env["HF_ENDPOINT"] == "https://hf-mirror.com"
    assert p.env["HF_HOME"] == "/cache/huggingface" and "HF_HUB_OFFLINE" not in p.env
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _plan(lab).env["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert "HF_HUB_OFFLINE" not in _plan(lab).env
    plain = load_lab(str(write_lab(tmp_path / "plain", {"nb": NB})), environ={})
    assert "HF_ENDPOINT" not in _plan(plain).env


def test_web_app_url_is_behind_jupyters_token(tmp_path: Path) -> None:
    lab = load_lab(str(write_lab(tmp_path / "lab", {"nb": NB})), environ={})
    p = _plan(lab)
    assert p.tensorboard_url is not None
    app = p.tensorboard_url.replace("/tensorboard/", "/proxy/7860/")
    assert app == f"http://127.0.0.1:{p.ports[8888]}/proxy/7860/?token=tok"
    assert 7860 not in p.ports


# --- what fits ---------------------------------------------------------------------------
QWEN = {  # config.json of Qwen2.5 0.5B / 7B / 14B, and their safetensors indexes' total_size
    "0.5B": ({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
              "vocab_size": 151936, "intermediate_size": 4864, "num_attention_heads": 14,
              "num_key_value_heads": 2, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16"}, None, 988_097_824, 494_032_768),
    "7B": ({"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28,
            "vocab_size": 152064, "intermediate_size": 18944, "num_attention_heads": 28,
            "num_key_value_heads": 4, "tie_word_embeddings": False,
            "torch_dtype": "bfloat16"}, 15_231_233_024, None, 7_615_616_512),
    "14B": ({"model_type": "qwen2", "hidden_size": 5120, "num_hidden_layers": 48,
             "vocab_size": 152064, "intermediate_size": 13824, "num_attention_heads": 40,
             "num_key_value_heads": 8, "tie_word_embeddings": False,
             "torch_dtype": "bfloat16"}, 29_540_067_328, None, 14_770_033_664),
}


@pytest.mark.parametrize("size", list(QWEN))
def test_parameters_from_config_and_index(size: str) -> None:
    cfg, total, single, params = QWEN[size]
    # the config estimate is within 1% of the real count (biases are left out)
    assert abs(mm.params_from_config(cfg) - params) / params < 0.01
    index = {"metadata": {"total_size": total}} if total else None
    got = mm.estimate(f"Qwen/Qwen2.5-{size}", cfg, index, single)
    assert abs(got.params - params) / params < 0.001
    assert ("safetensors index" if total else "model.safetensors") in got.source


def test_config_aliases_and_refusal() -> None:
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "vocab_size": 50257,
            "n_head": 12}
    assert abs(mm.params_from_config(gpt2) - 124_439_808) / 124_439_808 < 0.01
    with pytest.raises(LabError):
        mm.estimate("x/y", None, None)
    with pytest.raises(ValueError):
        mm.params_from_config({"model_type": "unet"})


def _gpus(case: str):
    def run(args: list[str]) -> tuple[int, str]:
        out = FIXTURES / case / ("query.out" if len(args) > 1 else "header.out")
        return 0, out.read_text()

    return probe_smi("nvidia-smi", run).gpus


def verdict_table() -> dict[tuple[str, str], str]:
    out = {}
    for case in ("rtx5070ti-570", "rtx4090-535", "h100-570"):
        gpus = _gpus(case)
        assert gpus, case
        for size, (cfg, total, single, _) in QWEN.items():
            index = {"metadata": {"total_size": total}} if total else None
            v = mm.verdicts(mm.estimate(size, cfg, index, single), gpus[:1])[0]
            out[(case, size)] = f"{v.status} {v.fits[0] if v.fits else 'none'}"
    return out


def test_what_fits_on_the_recorded_gpus() -> None:
    got = verdict_table()
    assert got == {
        ("rtx5070ti-570", "0.5B"): "ok bf16/fp16",
        ("rtx5070ti-570", "7B"): "warn int8",
        ("rtx5070ti-570", "14B"): "warn int4",
        ("rtx4090-535", "0.5B"): "ok bf16/fp16",
        ("rtx4090-535", "7B"): "ok bf16/fp16",
        ("rtx4090-535", "14B"): "warn int8",
        ("h100-570", "0.5B"): "ok bf16/fp16",
        ("h100-570", "7B"): "ok bf16/fp16",
        ("h100-570", "14B"): "ok bf16/fp16",
    }, json.dumps({f"{k[0]} {k[1]}": v for k, v in got.items()}, indent=1)


def test_too_big_for_one_gpu_spreads_over_two_or_fails() -> None:
    size = mm.ModelSize("big/70b", 70_000_000_000, "test")
    h100s = [SimpleNamespace(index=i, name="H100", memory_mib=81559) for i in range(2)]
    one = mm.verdicts(size, h100s[:1])[0]
    assert one.status == "warn" and "int8" in one.message  # 70 GB of int8 fits one H100
    huge = mm.ModelSize("huge/400b", 400_000_000_000, "test")
    assert mm.verdicts(huge, h100s[:1])[0].status == "fail"
    small = [SimpleNamespace(index=i, name="RTX", memory_mib=12227) for i in range(2)]
    mid = mm.ModelSize("mid/9b", 9_000_000_000, "test")
    spread = mm.verdicts(mid, small)
    assert spread[0].status == "warn" and "device_map" in spread[0].fix or "int" in \
        spread[0].message
    none = mm.verdicts(mid, [])
    assert none[0].status == "warn" and "no GPU" in none[0].message


def test_size_from_the_shared_cache_without_network(tmp_path: Path) -> None:
    """A model already in cache/huggingface is measured offline, from its files there."""
    lab = load_lab(str(write_lab(tmp_path / "lab", {})), environ={})
    repo = hf.hub_cache(lab) / "models--Qwen--Qwen2.5-7B"
    commit = "a" * 40
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cfg, total, _, params = QWEN["7B"]
    (snap / "config.json").write_text(json.dumps(cfg))
    (snap / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}}))
    ref, files = hf.model_files(lab, "Qwen/Qwen2.5-7B")  # no endpoint asked: the cache has it
    got = mm.estimate(ref.repo_id, files["config.json"], files["model.safetensors.index.json"])
    assert abs(got.params - params) / params < 0.001 and "index" in got.source
