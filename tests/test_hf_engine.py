"""Hugging Face in the labs: `labctl data get hf:` against a local server that answers the
Hugging Face file API the way a mirror does (huggingface_hub is the real client,
network.hf_endpoint / HF_ENDPOINT point at it), the shared cache read offline, and web
apps (Gradio) reached through Jupyter's address and token. The genai lab's own parts
(from_pretrained in the lab with the network off, a real Gradio app) are in the slow suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from array import array
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from conftest import BASE, REPO, TAG_PREFIX, labctl, write_lab

pytestmark = pytest.mark.engine

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "tiny-org/tiny-gpt2"
SECRET = "hf_NotARealTokenButSecret1234567890"
# huggingface_hub writes 10 MiB chunks: a cut keeps whole ones, so the weights are larger.
H, V, P, LAYERS = 64, 50304, 64, 1
CHUNK = 10 * 1024 * 1024


def _tensor(n: int, seed: int) -> bytes:
    block = array("f", [((i * 7919 + seed) % 200 - 100) / 5000.0 for i in range(997)])
    return (block * (n // 997 + 1))[:n].tobytes()


def safetensors(tensors: dict[str, tuple[list[int], bytes]]) -> bytes:
    """A safetensors file written by hand (8-byte header size, JSON header, data)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (shape, raw) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + data


def tiny_gpt2() -> dict[str, bytes]:
    """A GPT-2 that transformers loads: config.json and every weight (13.1 MB)."""
    shapes = {"transformer.wte.weight": [V, H], "transformer.wpe.weight": [P, H],
              "transformer.ln_f.weight": [H], "transformer.ln_f.bias": [H]}
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        shapes |= {p + "ln_1.weight": [H], p + "ln_1.bias": [H], p + "ln_2.weight": [H],
                   p + "ln_2.bias": [H], p + "attn.c_attn.weight": [H, 3 * H],
                   p + "attn.c_attn.bias": [3 * H], p + "attn.c_proj.weight": [H, H],
                   p + "attn.c_proj.bias": [H], p + "mlp.c_fc.weight": [H, 4 * H],
                   p + "mlp.c_fc.bias": [4 * H], p + "mlp.c_proj.weight": [4 * H, H],
                   p + "mlp.c_proj.bias": [H]}
    tensors = {}
    for k, (name, shape) in enumerate(shapes.items()):
        n = 1
        for d in shape:
            n *= d
        tensors[name] = (shape, _tensor(n, k))
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V,
              "n_embd": H, "n_layer": LAYERS, "n_head": 2, "n_positions": P,
              "torch_dtype": "float32"}
    return {"config.json": json.dumps(config).encode(),
            "model.safetensors": safetensors(tensors),
            "README.md": b"# tiny\n"}


class Mirror:
    """An HF-API-compatible endpoint: the repository API and /resolve/ with ETag,
    X-Repo-Commit, Content-Length and Range, as huggingface_hub expects of the Hub.
    ``cuts`` GETs of model.safetensors are cut off after ``cut_bytes`` each; after a cut,
    with ``down_after_cut``, it answers 503 until that is cleared."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.log: list[dict] = []
        self.cuts = 0
        self.cut_bytes = CHUNK + 500_000
        self.down_after_cut = False
        self.down = False
        self.served: dict[str, int] = {}
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                mirror.handle(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                mirror.handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def etag(name: str, data: bytes) -> str:
        if name.endswith(".safetensors"):  # LFS: the Hub's ETag is the sha256
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def _error(self, h: BaseHTTPRequestHandler, code: int, error_code: str) -> None:
        body = json.dumps({"error": error_code}).encode()
        h.send_response(code)
        h.send_header("X-Error-Code", error_code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.log.append({"method": h.command, "path": path, "range": h.headers.get("Range"),
                         "auth": h.headers.get("Authorization")})
        if self.down:
            return self._error(h, 503, "ServiceUnavailable")
        if m := re.fullmatch(r"/api/models/(.+?)/revision/(.+)", path):
            repo, rev = m[1], m[2]
            if repo not in self.repos:
                return self._error(h, 404, "RepoNotFound")
            if rev not in ("main", COMMIT):
                return self._error(h, 404, "RevisionNotFound")
            siblings = []
            for name, data in self.repos[repo].items():
                s = {"rfilename": name, "size": len(data), "blobId": self.etag(name, data)}
                if name.endswith(".safetensors"):
                    s["lfs"] = {"sha256": self.etag(name, data), "size": len(data),
                                "pointerSize": 134}
                siblings.append(s)
            out = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                              "siblings": siblings}).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            if body:
                h.wfile.write(out)
            return None
        m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
        if not m or m[1] not in self.repos:
            return self._error(h, 404, "RepoNotFound")
        if m[2] not in ("main", COMMIT):
            return self._error(h, 404, "RevisionNotFound")
        name = m[3]
        data = self.repos[m[1]].get(name)
        if data is None:
            return self._error(h, 404, "EntryNotFound")
        start = 0
        rng = h.headers.get("Range")
        if rng and (r := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(r[1])
        h.send_response(206 if start else 200)
        h.send_header("ETag", f'"{self.etag(name, data)}"')
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return None
        chunk = data[start:]
        if name == "model.safetensors" and self.cuts > 0:
            self.cuts -= 1
            chunk = chunk[:self.cut_bytes]
            h.wfile.write(chunk)
            h.wfile.flush()
            self.served[name] = self.served.get(name, 0) + len(chunk)
            h.close_connection = True
            h.connection.shutdown(2)  # the network drops mid-file
            self.down = self.down_after_cut
            return None
        h.wfile.write(chunk)
        self.served[name] = self.served.get(name, 0) + len(chunk)
        return None


@pytest.fixture
def mirror():
    m = Mirror({REPO_ID: tiny_gpt2()})
    yield m
    m.close()


def _lab(root: Path, mirror_url: str, specs: dict[str, str] | None = None) -> Path:
    return write_lab(root, specs or {}, f"network:\n  hf_endpoint: {mirror_url}\n")


def _env(**extra: str) -> dict[str, str]:
    env = {"HF_TOKEN": SECRET, "HF_HUB_OFFLINE": "", "HF_ENDPOINT": "", "COLUMNS": "200"}
    return {**env, **extra}


def test_get_from_the_mirror_resumes_an_interrupted_download(tmp_path: Path, mirror) -> None:
    lab = _lab(tmp_path / "lab", mirror.url)
    files = mirror.repos[REPO_ID]
    size = len(files["model.safetensors"])
    # The network drops mid-file and the mirror stays away for the other tries: labctl
    # gives up with the part kept (whole 10 MiB chunks).
    mirror.cuts, mirror.down_after_cut = 1, True
    first = labctl("data", "get", f"hf:{REPO_ID}", cwd=lab, env=_env())
    assert first.returncode != 0
    assert "Traceback" not in first.stderr
    assert "interrupted" in first.stderr and "run the same command again" in first.stderr
    hub = lab / "cache" / "huggingface" / "hub"
    parts = list((hub / "models--tiny-org--tiny-gpt2").rglob("*.incomplete"))
    assert len(parts) == 1 and parts[0].stat().st_size == CHUNK, parts
    kept = parts[0].stat().st_size

    mirror.log.clear()
    mirror.down, mirror.down_after_cut, mirror.served = False, False, {}
    second = labctl("data", "get", f"hf:{REPO_ID}", cwd=lab, env=_env())
    assert second.returncode == 0, second.stderr
    gets = [r for r in mirror.log if r["method"] == "GET" and r["path"].endswith(
        "model.safetensors")]
    assert len(gets) == 1 and gets[0]["range"] == f"bytes={kept}-", gets
    assert mirror.served["model.safetensors"] == size - kept  # the rest, no byte again
    # The learner's token never reaches a mirror, nor the output.
    assert not [r for r in mirror.log if r["auth"]]
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr
    snap = hub / "models--tiny-org--tiny-gpt2" / "snapshots" / COMMIT
    for name, data in files.items():
        assert (snap / name).read_bytes() == data
    assert (hub / "models--tiny-org--tiny-gpt2" / "refs" / "main").read_text() == COMMIT
    assert "13.1 MB" in second.stderr  # the size is said before the download
    # Offline, huggingface_hub itself finds the snapshot in the shared cache.
    found = offline_snapshot(hub)
    assert found.returncode == 0 and found.stdout.strip() == str(snap), found.stderr
    # `labctl data list` shows it with its size; a second get fetches nothing.
    listed = labctl("data", "list", "--json", cwd=lab, env=_env())
    row = next(r for r in json.loads(listed.stdout) if r["name"] == f"hf:{REPO_ID}")
    assert row["state"] == "present" and row["size"] >= size
    mirror.log.clear()
    again = labctl("data", "get", f"hf:{REPO_ID}", "--json", cwd=lab, env=_env())
    assert again.returncode == 0, again.stderr
    assert not [r for r in mirror.log if r["method"] == "GET" and "/resolve/" in r["path"]]


def offline_snapshot(hub: Path) -> subprocess.CompletedProcess[str]:
    """huggingface_hub itself, offline, asked for the tiny model's snapshot in ``hub``."""
    code = ("from huggingface_hub import snapshot_download as s; import sys;"
            f" print(s({REPO_ID!r}, cache_dir=sys.argv[1], local_files_only=True))")
    return subprocess.run([sys.executable, "-c", code, str(hub)], text=True,
                          capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=120)

def test_a_downloaded_model_travels_in_a_bundle(tmp_path: Path, mirror,
                                               docker_client) -> None:
    """`labctl save --with-data hf:...` carries the snapshot without links (each blob
    once); `labctl load` into another lab folder makes huggingface_hub's layout again,
    and huggingface_hub finds the model there offline, byte for byte."""
    tiny = f"description: tiny\nbase: {BASE}\nvolumes: [data, cache, models]\n"
    lab = _lab(tmp_path / "lab", mirror.url, {"tiny": tiny})
    got = labctl("data", "get", f"hf:{REPO_ID}", cwd=lab, env=_env())
    assert got.returncode == 0, got.stderr
    labctl("build", "tiny", cwd=lab, check=True)
    bundle = tmp_path / "tiny.labctl.zst"
    try:
        saved = labctl("save", "tiny", "--with-data", f"hf:{REPO_ID}", "-o", str(bundle),
                       cwd=lab, env=_env())
        assert saved.returncode == 0, saved.stderr
        listed = labctl("load", str(bundle), "--list", cwd=tmp_path, env=_env())
        assert "1 Hugging Face repositories" in listed.stdout, listed.stdout
        other = tmp_path / "other"
        loaded = labctl("load", str(bundle), "--lab", str(other), "--json", cwd=tmp_path,
                        env=_env())
        assert loaded.returncode == 0, loaded.stderr
        assert f"hf:{REPO_ID}" in json.loads(loaded.stdout)["data"]
        # A repository not in the cache is named, with the command that fetches it.
        missing = labctl("save", "tiny", "--with-data", "hf:nobody/nothing", "-o",
                         str(tmp_path / "x.labctl.zst"), cwd=lab, env=_env())
        assert missing.returncode != 0
        assert "labctl data get hf:nobody/nothing" in missing.stderr, missing.stderr
        assert not (tmp_path / "x.labctl.zst").exists()
    finally:
        docker_client.images.remove(f"{TAG_PREFIX}tiny:latest", force=True)
    hub = other / "cache" / "huggingface" / "hub"
    found = offline_snapshot(hub)
    assert found.returncode == 0, found.stderr
    snap = Path(found.stdout.strip())
    for name, data in mirror.repos[REPO_ID].items():
        assert (snap / name).is_symlink() and (snap / name).read_bytes() == data


def test_include_and_unknown_repositories(tmp_path: Path, mirror) -> None:
    lab = _lab(tmp_path / "lab", mirror.url)
    got = labctl("data", "get", f"hf:{REPO_ID}@{COMMIT}", "--include", "*.json", "--json",
                 cwd=lab, env=_env())
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)[0]["files"] == ["config.json"]
    missing = labctl("data", "get", "hf:nobody/nothing", cwd=lab, env=_env())
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nobody/nothing" in missing.stderr and mirror.url in missing.stderr
    bad = labctl("data", "get", "hf:../../etc", cwd=lab, env=_env())
    assert bad.returncode != 0 and "not a Hugging Face repository" in bad.stderr
    offline = labctl("data", "get", f"hf:{REPO_ID}", cwd=lab, env=_env(HF_HUB_OFFLINE="1"))
    assert offline.returncode != 0 and "HF_HUB_OFFLINE" in offline.stderr


def test_doctor_model_reads_the_index_not_the_weights(tmp_path: Path) -> None:
    """`labctl doctor --model` on recorded GPUs: a 7B model's index says 15.2 GB of bf16."""
    index = {"metadata": {"total_size": 15_231_233_024}, "weight_map": {}}
    config = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28,
              "vocab_size": 152064, "intermediate_size": 18944, "num_attention_heads": 28,
              "num_key_value_heads": 4, "torch_dtype": "bfloat16"}
    m = Mirror({"big/seven-b": {"config.json": json.dumps(config).encode(),
                                "model.safetensors.index.json": json.dumps(index).encode()}})
    try:
        lab = _lab(tmp_path / "lab", m.url)
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir()
        shutil.copy(REPO / "tests/fixtures/nvidia-smi/fake-nvidia-smi", fake_bin / "nvidia-smi")
        (fake_bin / "nvidia-smi").chmod(0o755)
        env = _env(LABCTL_NO_NVML="1", PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
                   FAKE_NVIDIA_SMI_DIR=str(REPO / "tests/fixtures/nvidia-smi/rtx4090-535"))
        out = labctl("doctor", "--model", "big/seven-b", "--json", cwd=lab, env=env)
        rows = [r for r in json.loads(out.stdout) if r["id"].startswith("gpu.model-memory")]
        assert len(rows) == 1, out.stdout
        assert rows[0]["status"] == "ok" and "7.62 B parameters" in rows[0]["message"]
        assert "RTX 4090" in rows[0]["title"]
        assert not [r for r in m.log if r["path"].endswith(".safetensors")]  # no weights
        assert not [r for r in m.log if r["auth"]]  # the token is not the mirror's
        unknown = labctl("doctor", "--model", "nobody/none", "--json", cwd=lab, env=env)
        assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
        row = next(r for r in json.loads(unknown.stdout) if "model-memory" in r["id"])
        assert row["status"] == "fail" and "config.json could not be read" in row["message"]
        assert m.url in row["message"]
    finally:
        m.close()


# --- web apps through Jupyter ------------------------------------------------------------
JUP = f"""\
description: a Jupyter lab for the tests
base: {BASE}
pip: ["jupyterlab>=4.4,<5"]
jupyter: {{enabled: true, port: 8888}}
volumes: [data, cache, models]
"""


def _stop(lab: Path) -> None:
    ours = [r["name"] for r in json.loads(labctl("ps", "--json", cwd=lab).stdout)
            if r["lab"] == str(lab)]
    labctl("stop", *ours, cwd=lab)


def _app_url(stderr: str) -> tuple[str, str]:
    m = re.search(r"(http://127\.0\.0\.1:\d+/proxy/7860/)\?token=(\w+)", stderr)
    assert m, stderr
    return m[1], m[2]


def _refused(url: str, needle: str) -> None:
    """Without Jupyter's token (or with a wrong one) the app is not reached: Jupyter sends a
    page request to its login (302) and refuses anything else (403)."""
    for token in ("", "?token=wrong"):
        page = requests.get(url + token, timeout=10, allow_redirects=False)
        assert page.status_code == 302 and "/login" in page.headers["Location"], page
        assert needle not in page.text
        call = requests.post(url + token, data=b"{}", timeout=10, allow_redirects=False)
        assert call.status_code == 403 and needle not in call.text, call


def _wait(url: str, token: str, needle: str) -> requests.Response:
    deadline, got = time.monotonic() + 300, None  # a busy machine imports gradio slowly
    while time.monotonic() < deadline:
        try:
            got = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=30)
            if got.status_code == 200 and needle in got.text:
                return got
        except requests.RequestException:
            pass
        time.sleep(2)
    said = f"{got.status_code} {got.text[:300]}" if got is not None else "no answer"
    raise AssertionError(f"{url}: {said}")


def test_a_web_app_in_the_lab_answers_through_jupyter_with_the_token(docker_client,
                                                                     tmp_path: Path) -> None:
    lab = _lab(tmp_path / "lab", "https://hf-mirror.example.org", {"jup": JUP})
    labctl("build", "jup", cwd=lab, check=True)
    (lab / "work").mkdir()
    (lab / "work" / "index.html").write_text("<h1>an app on 7860</h1>")
    started = labctl("run", "jup", "--user", "-d", cwd=lab, timeout=600,
                     env={"HF_HUB_OFFLINE": "1"})
    try:
        assert started.returncode == 0, started.stderr
        url, token = _app_url(started.stderr)
        name = next(r["name"] for r in json.loads(labctl("ps", "--json", cwd=lab).stdout)
                    if r["lab"] == str(lab))
        envs = subprocess.run(["docker", "exec", name, "env"], text=True, capture_output=True,
                              check=True).stdout.splitlines()
        assert "HF_ENDPOINT=https://hf-mirror.example.org" in envs
        assert "HF_HUB_OFFLINE=1" in envs and "HF_HOME=/cache/huggingface" in envs
        subprocess.run(["docker", "exec", "-d", "-u", str(os.getuid()), "-w", "/workspace/work",
                        name, "python", "-m", "http.server", "7860", "--bind", "127.0.0.1"],
                       check=True)
        assert "an app on 7860" in _wait(url, token, "an app on 7860").text
        _refused(url, "an app on 7860")
        ports = docker_client.containers.get(name).attrs["NetworkSettings"]["Ports"]
        assert "7860/tcp" not in ports  # never published on a port of its own
    finally:
        _stop(lab)


# --- the genai lab itself (slow: builds it) ---------------------------------------------
@pytest.fixture(scope="module")
def genai_lab(docker_client, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genai") / "lab"
    shutil.copytree(REPO / "images", root / "images")
    shutil.copy(REPO / "volumes.yaml", root / "volumes.yaml")
    (root / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\n")
    built = labctl("build", "genai", "--progress", "plain", cwd=root, timeout=3600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    return root


@pytest.mark.slow
def test_downloaded_model_loads_in_the_lab_with_the_network_off(genai_lab: Path,
                                                                 mirror) -> None:
    settings = genai_lab / "labctl.yaml"
    settings.write_text(f"tag_prefix: {TAG_PREFIX}\nnetwork:\n  hf_endpoint: {mirror.url}\n")
    got = labctl("data", "get", f"hf:{REPO_ID}", cwd=genai_lab, env=_env())
    assert got.returncode == 0, got.stderr
    mirror.close()  # the mirror is gone too: only the shared cache is left
    code = ("import os, torch; from transformers import AutoModelForCausalLM as M;"
            f" m = M.from_pretrained({REPO_ID!r});"
            " out = m(torch.tensor([[1, 2, 3]])).logits;"
            " print('loaded', tuple(out.shape), os.environ['HF_HUB_OFFLINE'])")
    # --network none: no network at all (as `labctl check`); the cache read-only.
    image = f"{TAG_PREFIX}genai:latest"
    ran = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-u", f"{os.getuid()}:{os.getgid()}",
         "-e", "HF_HOME=/cache/huggingface", "-e", "HF_HUB_OFFLINE=1", "-e", "HOME=/tmp",
         "-e", "USER=learner", "-v", f"{genai_lab / 'cache'}:/cache:ro", image, "python", "-c",
         code],
        text=True, capture_output=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"loaded (1, 3, {V}) 1" in ran.stdout
    # The same through `labctl run`, told to stay offline from the learner's shell.
    run = labctl("run", "genai", "--user", "--", "python", "-c", code, cwd=genai_lab,
                 timeout=600, env={"HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"loaded (1, 3, {V}) 1" in run.stdout


GRADIO_APP = """\
import gradio as gr
with gr.Blocks(title="labctl-gradio-test") as demo:
    gr.Markdown("hello from gradio")
demo.launch()  # the lab sets 127.0.0.1:7860 and the root path behind Jupyter
"""


@pytest.mark.slow
def test_gradio_answers_through_jupyter_with_the_token(genai_lab: Path) -> None:
    (genai_lab / "work").mkdir(exist_ok=True)
    (genai_lab / "work" / "app.py").write_text(GRADIO_APP)
    started = labctl("run", "genai", "--user", "-d", cwd=genai_lab, timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        url, token = _app_url(started.stderr)
        name = next(r["name"] for r in json.loads(labctl("ps", "--json", cwd=genai_lab).stdout)
                    if r["lab"] == str(genai_lab))
        subprocess.run(["docker", "exec", "-d", "-u", str(os.getuid()), "-w", "/workspace/work",
                        name, "sh", "-c", "python app.py > app.log 2>&1"], check=True)
        try:
            page = _wait(url, token, "labctl-gradio-test")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{(genai_lab / 'work' / 'app.log').read_text()}") from None
        assert page.status_code == 200
        # Gradio's own links (its config's root) go through Jupyter's proxy too.
        assert re.search(r'"root":"http://127\.0\.0\.1:\d+/proxy/7860"', page.text), page.text
        config = requests.get(f"{url}config", headers={"Authorization": f"token {token}"},
                              timeout=30)
        assert config.status_code == 200 and "hello from gradio" in config.text
        _refused(url, "labctl-gradio-test")
    finally:
        _stop(genai_lab)
