"""Rendering specs into build contexts: golden Dockerfiles, layer order, hash, CA, wheels.

Regenerate the golden files after an intended template change with

    LABCTL_UPDATE_GOLDEN=1 pytest tests/test_render.py

and review the diff of tests/golden/ before committing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl import resources
from labctl.config.lab import Lab, init_lab, load_lab
from labctl.config.spec import load_spec, spec_names
from labctl.errors import LabError
from labctl.image.build import direct_loopback
from labctl.image.layers import PIP_CHECK, WHEELHOUSE_URL
from labctl.image.render import BuildContext, _instructions, render

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LABCTL_UPDATE_GOLDEN") == "1"
SHIPPED = spec_names(resources.default_images_dir())
WITH_TORCH = [n for n in SHIPPED if load_spec(n, resources.default_images_dir()).torch]
CA = Path(__file__).parent / "fixtures" / "ca"
PEM = (CA / "test-ca.pem").read_bytes()
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def fixed_lab(root: Path, settings: str = "", specs: dict[str, Any] | None = None) -> Lab:
    """A lab from the shipped defaults whose settings do not depend on the host's env vars."""
    init_lab(root)
    (root / "labctl.yaml").write_text(settings)
    for name, data in (specs or {}).items():
        text = data if isinstance(data, str) else yaml.safe_dump(data)
        (root / "images" / f"{name}.yaml").write_text(text)
    return load(root)


def load(root: Path, environ: dict[str, str] | None = None) -> Lab:
    """The lab at ``root`` with these variables and no host trust store (see trust.py)."""
    return load_lab(str(root), environ=environ or {}, host_root=root / "no-host")


def render_spec(lab: Lab, name: str) -> BuildContext:
    return render(lab, lab.spec(name))


def edit_spec(lab: Lab, name: str, **changes: Any) -> None:
    """Change top-level keys of a spec file in place (same name, so the same header)."""
    path = lab.images_dir / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    data.update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def through_torch_layer(dockerfile: str) -> list[str]:
    """The Dockerfile's lines up to and including the RUN that installs torch."""
    lines = dockerfile.splitlines()
    start = lines.index("# labctl-key: torch")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("RUN "))
    while lines[end].endswith("\\"):
        end += 1
    assert "requirements-torch.txt" in "\n".join(lines[start:end + 1])
    return lines[: end + 1]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return fixed_lab(tmp_path / "lab")


# --- golden Dockerfiles ------------------------------------------------------------------


def test_every_shipped_spec_has_a_golden_file() -> None:
    if UPDATE:
        pytest.skip("updating golden files")
    names = {p.name.removesuffix(".Dockerfile") for p in GOLDEN.glob("*.Dockerfile")}
    assert names == set(SHIPPED), "run LABCTL_UPDATE_GOLDEN=1 pytest tests/test_render.py"


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_dockerfile(lab: Lab, name: str) -> None:
    dockerfile = render_spec(lab, name).dockerfile
    golden = GOLDEN / f"{name}.Dockerfile"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(dockerfile, encoding="utf-8")
        return
    assert golden.is_file(), (
        f"{golden} is missing; create it with LABCTL_UPDATE_GOLDEN=1 pytest tests/test_render.py"
    )
    assert dockerfile == golden.read_text(encoding="utf-8"), (
        f"the rendered Dockerfile of {name} changed; if intended, regenerate with "
        "LABCTL_UPDATE_GOLDEN=1 pytest tests/test_render.py and review the diff"
    )


def test_goldens_need_a_fixed_environment(tmp_path: Path) -> None:
    """The fixture lab really is fixed: host variables must not leak into the goldens."""
    cert = tmp_path / "host.pem"
    cert.write_bytes(PEM)
    root = tmp_path / "lab"
    fixed = fixed_lab(root)
    with_env = load(root, {"SSL_CERT_FILE": str(cert)})
    assert render_spec(fixed, "d2l").dockerfile != render_spec(with_env, "d2l").dockerfile


@pytest.mark.parametrize("name", SHIPPED)
def test_every_line_is_an_instruction_or_a_comment(lab: Lab, name: str) -> None:
    for line in _instructions(render_spec(lab, name).dockerfile):
        if line.startswith("#"):
            continue
        assert line.split()[0] in INSTRUCTIONS, line


# --- layer order -------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_TORCH)
@pytest.mark.parametrize(
    ("key", "item"),
    [("pip", "tqdm>=4.66"), ("extras", "rich>=13"), ("pip_nodeps", "d2l==0.17.6"),
     ("apt", "graphviz-dev")],
)
def test_adding_a_package_keeps_the_torch_layer(
    lab: Lab, name: str, key: str, item: str
) -> None:
    before = render_spec(lab, name)
    spec = lab.spec(name)
    edit_spec(lab, name, **{key: [*getattr(spec, key), item]})
    after = render_spec(lab, name)

    assert after.dockerfile != before.dockerfile or after.files != before.files
    assert through_torch_layer(after.dockerfile) == through_torch_layer(before.dockerfile)
    torch_reqs = "labctl/requirements-torch.txt"
    assert after.files[torch_reqs] == before.files[torch_reqs]
    # Every file that the layers up to torch COPY is unchanged too.
    copied = [
        line.split()[1:-1] for line in through_torch_layer(before.dockerfile)
        if line.startswith("COPY ")
    ]
    for sources in copied:
        for src in sources:
            if src in before.files:
                assert after.files[src] == before.files[src], src
    assert after.digest != before.digest


def test_layer_order_follows_change_frequency(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"all": {
        "apt": ["git"], "torch": {"version": "2.10.0"}, "pip": ["rich"],
        "pip_nodeps": ["d2l==0.17.6"], "extras": ["tqdm"], "env": {"A": "1"},
    }})
    keys = render_spec(lab, "all").step_keys()
    first = {k: keys.index(k) for k in ("python", "torch", "apt", "pip", "extras")}
    assert first["python"] < first["torch"] < first["apt"] < first["pip"] < first["extras"]
    assert "pip_nodeps" not in keys  # one layer with pip: the --no-deps install follows it
    # labctl's runtime files come before the lab's own packages, the spec's env and other
    # metadata after them all, so neither reruns for a package change; the extras RUN
    # is the last install and ends with the dependency check.
    assert keys[0] == "base" and first["torch"] < keys.index("runtime") < first["apt"]
    assert keys.index("env") > first["extras"] and keys[-1] == "env"
    runs = [i for i in _instructions(render_spec(lab, "all").dockerfile) if i.startswith("RUN ")]
    assert runs[-1].endswith(f"&& {PIP_CHECK}") and "requirements-extras.txt" in runs[-1]


def test_extras_layer_is_there_without_extras(tmp_path: Path) -> None:
    """Adding the first extra package changes no earlier instruction."""
    lab = fixed_lab(tmp_path / "lab", specs={"a": {"pip": ["rich"]},
                                             "b": {"pip": ["rich"], "extras": ["tqdm"]}})
    without, with_extras = (
        [i for i in _instructions(render_spec(lab, n).dockerfile) if not i.startswith("#")]
        for n in "ab")
    start = without.index("COPY labctl/requirements-extras.txt /opt/labctl/")
    assert without[:start] == with_extras[:start]
    assert without[start + 1] == f"RUN {PIP_CHECK}"


def test_changing_torch_changes_the_torch_layer(lab: Lab) -> None:
    before = render_spec(lab, "d2l")
    spec = lab.spec("d2l")
    assert spec.torch is not None
    edit_spec(lab, "d2l", torch={**spec.torch.model_dump(), "version": "2.9.1"})
    after = render_spec(lab, "d2l")
    assert after.files["labctl/requirements-torch.txt"] != before.files[
        "labctl/requirements-torch.txt"
    ]
    assert b"torch==2.9.1" in after.files["labctl/requirements-torch.txt"]
    assert b"torch==2.9.1" in after.files["labctl/constraints.txt"]
    assert after.digest != before.digest


# --- content hash ------------------------------------------------------------------------


def test_hash_is_stable_when_nothing_changes(lab: Lab) -> None:
    first = render_spec(lab, "yolo-cpu")
    again = render_spec(lab, "yolo-cpu")
    assert first.digest == again.digest
    # Reloading the lab or reformatting the spec (a comment) changes nothing either.
    path = lab.images_dir / "yolo-cpu.yaml"
    path.write_text("# a comment of mine\n" + path.read_text())
    reloaded = load(lab.root, {})
    assert render_spec(reloaded, "yolo-cpu").digest == first.digest


@pytest.mark.parametrize(
    "change",
    [
        {"pip": ["jupyterlab>=4.4,<5", "ultralytics>=8.4,<8.5", "opencv-python-headless>=4.11"]},
        {"apt": ["libgl1"]},
        {"env": {"YOLO_OFFLINE": "0"}},
        {"python": "3.12"},
        {"extras": ["rich"]},
    ],
)
def test_hash_changes_with_the_spec(lab: Lab, change: dict[str, Any]) -> None:
    before = render_spec(lab, "yolo-cpu").digest
    edit_spec(lab, "yolo-cpu", **change)
    assert render_spec(lab, "yolo-cpu").digest != before


def test_hash_changes_with_the_index(tmp_path: Path) -> None:
    plain = render_spec(fixed_lab(tmp_path / "a"), "d2l").digest
    mirror = fixed_lab(tmp_path / "b", "network: {index_url: 'https://mirror.example/simple'}\n")
    assert render_spec(mirror, "d2l").digest != plain


def test_proxies_are_build_args_and_leave_the_hash_alone(tmp_path: Path) -> None:
    plain = render_spec(fixed_lab(tmp_path / "a"), "d2l")
    proxied = render_spec(
        fixed_lab(tmp_path / "b", "network: {https_proxy: 'http://127.0.0.1:7890'}\n"), "d2l"
    )
    assert proxied.buildargs["https_proxy"] == "http://127.0.0.1:7890"
    assert proxied.buildargs["HTTPS_PROXY"] == "http://127.0.0.1:7890"
    assert "127.0.0.1:7890" not in proxied.dockerfile
    assert proxied.digest == plain.digest


# --- requirements live in files, not in the Dockerfile -----------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_requirements_never_appear_in_the_dockerfile(lab: Lab, name: str) -> None:
    spec = lab.spec(name)
    ctx = render(lab, spec)
    wanted = {
        "labctl/requirements-lab.txt": spec.lab_packages,  # pip + its compat pins
        "labctl/requirements-nodeps.txt": spec.pip_nodeps,
        "labctl/requirements-extras.txt": spec.extras,
    }
    if spec.torch:
        wanted["labctl/requirements-torch.txt"] = [
            f"torch=={spec.torch.version}", *spec.torch.packages
        ]
    for file, reqs in wanted.items():
        if not reqs:
            continue
        assert ctx.files[file].decode().splitlines() == list(reqs)
        for req in reqs:
            assert req not in ctx.dockerfile, req


def test_requirement_names_never_reach_the_dockerfile(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"probe": {
        "torch": {"version": "2.10.0", "packages": ["zzprobe-vision==9.9"]},
        "pip": ["zzprobe-lab>=1"], "pip_nodeps": ["zzprobe-nodeps==2"],
        "extras": ["zzprobe-extra"],
    }})
    ctx = render_spec(lab, "probe")
    assert "zzprobe" not in ctx.dockerfile
    assert b"zzprobe-vision==9.9" in ctx.files["labctl/requirements-torch.txt"]
    assert b"zzprobe-lab>=1" in ctx.files["labctl/requirements-lab.txt"]
    assert b"zzprobe-nodeps==2" in ctx.files["labctl/requirements-nodeps.txt"]
    assert ctx.files["labctl/requirements-extras.txt"] == b"zzprobe-extra\n"
    # The torch packages are pinned for the later layers.
    assert ctx.files["labctl/constraints.txt"] == b"torch==2.10.0\nzzprobe-vision==9.9\n"


def test_env_values_are_quoted_and_escaped(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"e": {"env": {
        "GREETING": 'say "hi" to \\$USER', "CLOSE": 'x" BAR="y', "WIN": "C:\\temp",
    }}})
    dockerfile = render_spec(lab, "e").dockerfile
    env_lines = [
        line for line in _instructions(dockerfile)
        if line.startswith("ENV ") and "GREETING=" in line
    ]
    assert len(env_lines) == 1
    assert 'GREETING="say \\"hi\\" to \\$USER"' in env_lines[0]
    assert 'CLOSE="x\\" BAR=\\"y"' in env_lines[0]
    assert 'WIN="C:\\\\temp"' in env_lines[0]


def test_command_ports_and_workdir(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"c": {
        "command": ["python", "-c", "print('a \"b\"')"], "ports": [6006],
        "jupyter": {"enabled": True, "port": 8890}, "workdir": "/srv/work",
    }})
    lines = render_spec(lab, "c").dockerfile.splitlines()
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert len(cmd) == 1
    assert json.loads(cmd[0].removeprefix("CMD ")) == ["python", "-c", "print('a \"b\"')"]
    assert "EXPOSE 8890 6006" in lines
    assert "WORKDIR /srv/work" in lines


def test_torch_variant_index(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={
        "cpu": {"torch": {"version": "2.10.0", "variant": "cpu"}},
        "default": {"torch": {"version": "2.10.0", "variant": "cu128"}},
        "unbuilt": {"torch": {"version": "2.10.0", "variant": "cu117"}},
    })
    cpu = through_torch_layer(render_spec(lab, "cpu").dockerfile)[-1]
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu
    assert "--index-url" not in through_torch_layer(render_spec(lab, "default").dockerfile)[-1]
    with pytest.raises(LabError) as info:
        render_spec(lab, "unbuilt")
    assert "cu117" in info.value.message and info.value.fix and "cu128" in info.value.fix


# --- CA bundle and wheelhouse ------------------------------------------------------------


def test_no_ca_bundle_no_copy(lab: Lab) -> None:
    ctx = render_spec(lab, "d2l")
    assert "update-ca-certificates" not in ctx.dockerfile
    assert "labctl/ca-extra.crt" not in ctx.files


@pytest.mark.parametrize("how", ["settings", "environment"])
def test_ca_bundle_is_trusted_in_the_build(tmp_path: Path, how: str) -> None:
    cert = tmp_path / "corp.pem"
    cert.write_bytes(PEM)
    root = tmp_path / "lab"
    if how == "settings":
        lab = fixed_lab(root, "network: {ca_bundle: ../corp.pem}\n")
    else:
        fixed_lab(root)
        lab = load(root, {"SSL_CERT_FILE": str(cert)})
    ctx = render_spec(lab, "d2l")
    assert ctx.files["labctl/ca-extra.crt"] == PEM
    lines = ctx.dockerfile.splitlines()
    copy = lines.index("COPY labctl/ca-extra.crt /usr/local/share/ca-certificates/labctl-extra.crt")
    update = lines.index(" && update-ca-certificates \\")
    # Trusted in the first RUN, before anything is downloaded from the Python index.
    first_run = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    first_pip = next(i for i, line in enumerate(lines) if "fetch_uv.py" in line)
    assert copy < first_run < update < first_pip
    assert ctx.digest != render_spec(fixed_lab(tmp_path / "plain"), "d2l").digest


def test_ca_bundle_errors(tmp_path: Path) -> None:
    (tmp_path / "notpem.txt").write_text("hello")
    bad = fixed_lab(tmp_path / "a", "network: {ca_bundle: ../notpem.txt}\n")
    with pytest.raises(LabError) as info:
        render_spec(bad, "d2l")
    assert "PEM" in info.value.message and info.value.fix
    missing = fixed_lab(tmp_path / "b", "network: {ca_bundle: /nonexistent/ca.pem}\n")
    with pytest.raises(LabError) as info:
        render_spec(missing, "d2l")
    assert "/nonexistent/ca.pem" in info.value.message and info.value.fix


def test_wheelhouse_is_served_not_copied(tmp_path: Path) -> None:
    wheels = tmp_path / "lab" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "torch-2.13.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel-a")
    (wheels / "rich-13.0.0-py3-none-any.whl").write_bytes(b"wheel-b")
    (wheels / "notes.txt").write_text("not a wheel")
    lab = fixed_lab(tmp_path / "lab", "wheelhouse: wheels\n")
    ctx = render_spec(lab, "d2l")
    assert ctx.wheelhouse == wheels
    # No wheel travels in the context; a list of them does, so the cache follows them.
    assert not any(name.endswith(".whl") for name in ctx.files)
    manifest = ctx.files["labctl/wheelhouse.txt"].decode().splitlines()
    assert manifest == ["rich-13.0.0-py3-none-any.whl 7",
                        "torch-2.13.0-cp311-cp311-linux_x86_64.whl 7"]
    lines = ctx.dockerfile.splitlines()
    copy = lines.index("COPY labctl/wheelhouse.txt /opt/labctl/")
    installs = [i for i, line in enumerate(lines) if "uv pip install" in line]
    assert installs and all(i > copy for i in installs)
    assert all(f"--find-links {WHEELHOUSE_URL}" in lines[i] for i in installs)
    # Copying the same wheels again (new mtimes) keeps the hash; adding one changes it.
    os.utime(wheels / "rich-13.0.0-py3-none-any.whl", (1, 1))
    assert render_spec(lab, "d2l").digest == ctx.digest
    (wheels / "tqdm-4.0.0-py3-none-any.whl").write_bytes(b"wheel-c")
    assert render_spec(lab, "d2l").digest != ctx.digest


@pytest.mark.parametrize(("given", "expected"), [
    ("", "127.0.0.1,localhost"),
    ("corp.example, .internal", "corp.example,.internal,127.0.0.1,localhost"),
    ("localhost,127.0.0.1", "localhost,127.0.0.1"),
])
def test_the_served_wheelhouse_bypasses_proxies(given: str, expected: str) -> None:
    assert direct_loopback(given) == expected


def test_spec_wheelhouse_that_does_not_exist(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"w": {"wheelhouse": "nowhere"}})
    with pytest.raises(LabError) as info:
        render_spec(lab, "w")
    assert info.value.file == str(lab.images_dir / "w.yaml")
    assert "nowhere" in info.value.message and info.value.fix


# --- the CLI writes the context -------------------------------------------------------


def test_cli_render_context(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("LABCTL_")
        and k not in {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PIP_INDEX_URL"}
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labctl", *args], cwd=lab.root, env=env, text=True,
            capture_output=True, timeout=120,
        )

    out = tmp_path / "ctx"
    wrote = cli("render", "yolo-gpu", "--context", str(out))
    assert wrote.returncode == 0, wrote.stderr
    printed = cli("render", "yolo-gpu")
    assert printed.returncode == 0, printed.stderr
    assert (out / "Dockerfile").read_text() == printed.stdout
    expected = render_spec(load_lab(str(lab.root), environ={}), "yolo-gpu")  # the host's CA
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == set(expected.files)
    for name, data in expected.files.items():
        assert (out / name).read_bytes() == data, name
    assert expected.digest in wrote.stderr


def test_labels_are_one_instruction_outside_the_hash(lab: Lab) -> None:
    ctx = render_spec(lab, "d2l")
    labelled = ctx.labelled({"org.labctl.spec": "d2l", "org.labctl.lab": '/home/a "b"\n$HOME'})
    assert labelled.digest == ctx.digest and ctx.dockerfile in labelled.dockerfile
    added = _instructions(labelled.dockerfile)[len(_instructions(ctx.dockerfile)):]
    label = [i for i in added if not i.startswith("#")]
    assert label == ['LABEL org.labctl.spec="d2l" \\ org.labctl.lab="/home/a \\"b\\" \\$HOME"']
    assert labelled.step_keys() == [*ctx.step_keys(), "labels"]
    assert labelled.files["Dockerfile"] == labelled.dockerfile.encode()


# --- trust: the host's store, the same from every shell ------------------------------------


def _host(root: Path, distro: bytes, local: bytes) -> Path:
    """A host file system: the distribution's CA set, and a system bundle that also holds
    a local anchor (a TLS-inspecting proxy's CA appended by an administrator)."""
    (root / "usr/share/ca-certificates/mozilla").mkdir(parents=True)
    (root / "usr/share/ca-certificates/mozilla/Root.crt").write_bytes(distro)
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(distro + local)
    return root


def test_the_image_does_not_change_with_the_shell(tmp_path: Path) -> None:
    # sudo drops PIP_CERT/SSL_CERT_FILE: the build must trust the same certificates (and
    # so be the same image) for root, a sudo user and a plain user.
    distro, local = (CA / "second-ca.pem").read_bytes(), PEM
    host = _host(tmp_path / "host", distro, local)
    fixed_lab(tmp_path / "lab")
    bundle = str(host / "etc/ssl/certs/ca-certificates.crt")
    shells = [{}, {"SSL_CERT_FILE": bundle, "PIP_CERT": bundle, "REQUESTS_CA_BUNDLE": bundle}]
    ctxs = [render_spec(load_lab(str(tmp_path / "lab"), environ=env, host_root=host), "d2l")
            for env in shells]
    assert ctxs[0].digest == ctxs[1].digest
    assert ctxs[0].files["labctl/ca-extra.crt"] == local  # the local anchor, not Mozilla's


def test_the_real_host_store_gives_one_image_from_every_shell(tmp_path: Path) -> None:
    fixed_lab(tmp_path / "lab")
    digests = {render_spec(load_lab(str(tmp_path / "lab"), environ=env), "d2l").digest
               for env in ({}, {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                                "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"})
               if Path("/etc/ssl/certs/ca-certificates.crt").is_file()}
    assert len(digests) <= 1


def test_only_certificates_of_a_bundle_are_copied(tmp_path: Path) -> None:
    (tmp_path / "bundle.pem").write_bytes((CA / "ca-with-key.pem").read_bytes())
    lab = fixed_lab(tmp_path / "lab", "network: {ca_bundle: ../bundle.pem}\n")
    copied = render_spec(lab, "d2l").files["labctl/ca-extra.crt"]
    assert copied == PEM and b"PRIVATE KEY" not in copied


# --- credentials: never in the context, the build args or the Dockerfile --------------------


def test_index_credentials_stay_out_of_the_image(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", "network:\n"
                    "  index_url: https://lbuser:s3cret@mirror.example/simple\n"
                    "  extra_index_urls: ['https://tok%40en:p%3Ass@extra.example/simple']\n",
                    specs={"t": {"torch": {"version": "2.10.0", "variant": "cpu",
                                           "index_url": "https://u:torchpw@torch.example/whl"},
                                 "pip": ["six"]}})
    ctx = render_spec(lab, "t")
    text = ctx.dockerfile + json.dumps(ctx.buildargs) + "".join(
        d.decode(errors="replace") for d in ctx.files.values())
    for secret in ("s3cret", "p%3Ass", "p:ss", "torchpw", "lbuser"):
        assert secret not in text, secret
    assert ctx.buildargs["LABCTL_INDEX_URL"] == "https://mirror.example/simple"
    assert "--index-url https://torch.example/whl" in ctx.dockerfile
    netrc = ctx.secrets["netrc"].decode()
    assert "machine mirror.example login lbuser password s3cret" in netrc
    assert "machine extra.example login tok@en password p:ss" in netrc
    assert "machine torch.example login u password torchpw" in netrc
    # Each downloading RUN fetches them first and removes them before its layer ends.
    runs = [i for i in _instructions(ctx.dockerfile) if i.startswith("RUN ") and "uv " in i]
    assert runs and all("fetch_secret.py netrc" in r and r.endswith("rm -f /tmp/labctl.netrc")
                        for r in runs if "uv pip install" in r or "fetch_uv" in r)
    same = render_spec(fixed_lab(tmp_path / "lab2", "network:\n"
                       "  index_url: https://lbuser:other@mirror.example/simple\n"
                       "  extra_index_urls: ['https://tok%40en:p%3Ass@extra.example/simple']\n",
                       specs={"t": {"torch": {"version": "2.10.0", "variant": "cpu",
                                              "index_url": "https://u:torchpw@torch.example/whl"},
                                    "pip": ["six"]}}), "t")
    assert same.digest == ctx.digest  # a new password rebuilds nothing


# --- the context on disk, the files it takes from the lab ------------------------------------


def test_render_context_never_follows_a_planted_link(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab")
    ctx = render_spec(lab, "d2l")
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    planted = tmp_path / "ctx"
    planted.mkdir()
    (planted / "Dockerfile").symlink_to(victim)
    with pytest.raises(LabError, match="not empty"):
        ctx.write(planted)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LabError, match="symbolic link"):
        ctx.write(link)
    assert victim.read_text() == "someone else's file"
    ctx.write(tmp_path / "fresh")
    assert (tmp_path / "fresh" / "Dockerfile").read_text() == ctx.dockerfile


def test_a_prepare_script_that_links_outside_the_lab_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:secret-hash:")
    lab = fixed_lab(tmp_path / "lab", specs={"p": {"prepare": ["prepare/x.sh"]}})
    (lab.images_dir / "prepare").mkdir(exist_ok=True)
    (lab.images_dir / "prepare" / "x.sh").symlink_to(secret)
    with pytest.raises(LabError, match="outside the lab folder"):
        render_spec(lab, "p")


def test_jupyter_without_jupyterlab_installs_it_and_tensorboard(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab", specs={"j": {"pip": ["six"], "jupyter": True},
                                             "n": {"pip": ["six"], "jupyter": {
                                                 "enabled": True, "tensorboard": False}}})
    ctx = render_spec(lab, "j")
    assert ctx.files["labctl/requirements-lab.txt"] == (
        b"six\njupyterlab>=4.4,<5\njupyter-server-proxy>=4.4,<5\ntensorboard>=2.18,<3\n")
    assert "jupyter" in ctx.dockerfile.splitlines()[-1]
    without = render_spec(lab, "n").files["labctl/requirements-lab.txt"]
    assert without == b"six\njupyterlab>=4.4,<5\n"


def test_cli_render_json(tmp_path: Path) -> None:
    lab = fixed_lab(tmp_path / "lab")
    out = tmp_path / "ctx"
    proc = subprocess.run([sys.executable, "-m", "labctl", "render", "d2l", "--context",
                           str(out), "--json"], cwd=lab.root, text=True, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["context"] == str(out.resolve()) and "Dockerfile" in info["files"]
    assert len(info["hash"]) == 16
