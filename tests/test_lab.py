"""The lab folder: discovery, `labctl init`, settings from labctl.yaml and the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import resources
from labctl.config.lab import SETTINGS_FILE, VOLUMES_FILE, find_root, init_lab, is_lab, load_lab
from labctl.errors import LabError


def make_lab(root: Path, settings: str | None = None, specs: dict[str, str] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / VOLUMES_FILE).write_text(resources.default_volumes_file().read_text())
    if settings is not None:
        (root / SETTINGS_FILE).write_text(settings)
    for name, text in (specs or {}).items():
        (root / "images" / f"{name}.yaml").write_text(text)
    return root


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args], cwd=cwd, text=True, capture_output=True,
        env={**base, "COLUMNS": "120", **(env or {})}, timeout=120,
    )


def _inside_a_lab(path: Path) -> bool:
    return any(is_lab(d) for d in (path, *path.parents))


# --- discovery -------------------------------------------------------------------------


def test_found_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_lab(tmp_path / "lab")
    deep = root / "src" / "chapter3" / "notebooks"
    deep.mkdir(parents=True)
    assert find_root(start=deep) == root.resolve()
    monkeypatch.chdir(deep)
    assert load_lab(environ={}).root == root.resolve()


def test_settings_file_alone_marks_a_lab(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    (root / "sub").mkdir(parents=True)
    (root / SETTINGS_FILE).write_text("tag_prefix: me/\n")
    assert find_root(start=root / "sub") == root.resolve()


def test_nearest_lab_wins(tmp_path: Path) -> None:
    outer = make_lab(tmp_path / "outer")
    inner = make_lab(outer / "projects" / "inner")
    assert find_root(start=inner / "images") == inner.resolve()
    assert find_root(start=outer / "projects") == outer.resolve()


def test_explicit_lab_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_lab(tmp_path / "a")
    b = make_lab(tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_lab(str(a), environ={}).root == a.resolve()
    assert load_lab(environ={"LABCTL_LAB": str(b)}).root == b.resolve()
    # --lab beats LABCTL_LAB.
    assert load_lab(str(a), environ={"LABCTL_LAB": str(b)}).root == a.resolve()
    # A relative --lab is taken from the working directory.
    monkeypatch.chdir(tmp_path)
    assert load_lab("a", environ={}).root == a.resolve()
    # An explicit lab wins over the one around the working directory.
    monkeypatch.chdir(b / "images")
    assert load_lab(str(a), environ={}).root == a.resolve()


def test_explicit_folder_that_is_not_a_lab(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(LabError) as info:
        load_lab(str(tmp_path / "plain"), environ={})
    assert "not a lab folder" in info.value.message
    assert info.value.fix and "labctl init" in info.value.fix


def test_no_lab_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty" / "deeper"
    empty.mkdir(parents=True)
    if _inside_a_lab(empty):
        pytest.skip("the temporary folder lies inside a lab folder")
    monkeypatch.chdir(empty)
    with pytest.raises(LabError) as info:
        load_lab(environ={})
    err = info.value
    assert "no lab folder found" in err.message and str(empty.resolve()) in err.message
    assert err.fix and "labctl init" in err.fix and "--lab" in err.fix
    assert "LABCTL_LAB" in err.fix


def test_cli_without_a_lab(tmp_path: Path) -> None:
    if _inside_a_lab(tmp_path):
        pytest.skip("the temporary folder lies inside a lab folder")
    proc = run_cli("list", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "no lab folder found" in out and "labctl init" in out
    assert "Traceback" not in out


def test_cli_lab_option_and_env_var(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", specs={"tiny": "description: tiny\n"})
    work = tmp_path / "work"
    work.mkdir()
    by_option = run_cli("render", "tiny", "--lab", str(root), cwd=work)
    by_env = run_cli("render", "tiny", cwd=work, env={"LABCTL_LAB": str(root)})
    assert by_option.returncode == 0, by_option.stderr
    assert by_env.returncode == 0, by_env.stderr
    assert by_option.stdout == by_env.stdout
    assert "FROM debian:bookworm" in by_option.stdout


# --- init ------------------------------------------------------------------------------


def _shipped_files() -> dict[str, bytes]:
    root = resources.shipped_root()
    files = {VOLUMES_FILE: resources.default_volumes_file().read_bytes()}
    for p in resources.default_images_dir().rglob("*"):
        if p.is_file():
            files[p.relative_to(root).as_posix()] = p.read_bytes()
    return files


def test_init_creates_a_working_lab(tmp_path: Path) -> None:
    target = tmp_path / "mylab"
    results = init_lab(target)
    assert all(written for _, written in results)
    for rel, data in _shipped_files().items():
        assert (target / rel).read_bytes() == data, rel
    assert (target / SETTINGS_FILE).is_file()
    lab = load_lab(str(target), environ={})
    assert set(lab.spec_names()) >= {"d2l", "fastai", "yolo-cpu", "yolo-gpu"}
    for name in lab.spec_names():
        assert lab.spec(name).name == name
    assert {"data", "cache", "models", "ultralytics"} <= set(lab.volumes)
    assert lab.volumes["cache"].env["TORCH_HOME"].startswith(lab.volumes["cache"].container)


def test_init_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "mylab"
    init_lab(target)
    mine = "# my own d2l\ndescription: mine\n"
    (target / "images" / "d2l.yaml").write_text(mine)
    (target / SETTINGS_FILE).write_text("tag_prefix: me/\n")
    (target / VOLUMES_FILE).write_text("volumes: {}\n")
    (target / "images" / "fastai.yaml").unlink()

    results = dict(init_lab(target))
    assert (target / "images" / "d2l.yaml").read_text() == mine
    assert (target / SETTINGS_FILE).read_text() == "tag_prefix: me/\n"
    assert (target / VOLUMES_FILE).read_text() == "volumes: {}\n"
    # A file the learner deleted is restored; the others are reported as kept.
    assert results[target / "images" / "fastai.yaml"] is True
    assert results[target / "images" / "d2l.yaml"] is False
    assert results[target / SETTINGS_FILE] is False


def test_cli_init_twice(tmp_path: Path) -> None:
    first = run_cli("init", "lab", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    spec = tmp_path / "lab" / "images" / "yolo-cpu.yaml"
    spec.write_text("description: edited\n")
    second = run_cli("init", "lab", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert spec.read_text() == "description: edited\n"
    assert "kept" in second.stdout and "yolo-cpu.yaml" in second.stdout
    assert "created" not in second.stdout


# --- settings --------------------------------------------------------------------------

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def test_no_environment_no_network_settings(tmp_path: Path) -> None:
    lab = load_lab(str(make_lab(tmp_path / "lab")), environ={})
    net = lab.settings.network
    assert net.index_url is None and net.extra_index_urls == []
    assert net.http_proxy is None and net.https_proxy is None and net.no_proxy is None
    assert net.ca_bundle is None and lab.settings.wheelhouse is None


def test_settings_from_the_environment(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    environ = {
        "PIP_INDEX_URL": "https://pypi.tuna.tsinghua.edu.cn/simple",
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
        "https_proxy": "http://127.0.0.1:7890",
        "HTTP_PROXY": "http://127.0.0.1:7891",
        "no_proxy": "localhost,127.0.0.1",
        "SSL_CERT_FILE": "/etc/ssl/certs/corp.pem",
    }
    net = load_lab(str(root), environ=environ).settings.network
    assert net.index_url == "https://pypi.tuna.tsinghua.edu.cn/simple"
    assert net.extra_index_urls == ["https://a.example/simple", "https://b.example/simple"]
    assert net.https_proxy == "http://127.0.0.1:7890"
    assert net.http_proxy == "http://127.0.0.1:7891"
    assert net.no_proxy == "localhost,127.0.0.1"
    assert net.ca_bundle == "/etc/ssl/certs/corp.pem"


@pytest.mark.parametrize("var", ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_bundle_from_each_variable(tmp_path: Path, var: str) -> None:
    root = make_lab(tmp_path / "lab")
    lab = load_lab(str(root), environ={var: "/certs/x.pem"})
    assert lab.settings.network.ca_bundle == "/certs/x.pem"


def test_pip_cert_is_preferred_over_ssl_cert_file(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    lab = load_lab(str(root), environ={"SSL_CERT_FILE": "/b.pem", "PIP_CERT": "/a.pem"})
    assert lab.settings.network.ca_bundle == "/a.pem"


def test_labctl_yaml_overrides_the_environment(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", settings=(
        "network:\n"
        "  index_url: https://mirrors.example.cn/pypi/simple\n"
        "  extra_index_urls: [https://mine.example/simple]\n"
        "  https_proxy: http://10.0.0.1:3128\n"
        "  ca_bundle: certs/corp.pem\n"
        "wheelhouse: wheels\n"
        "tag_prefix: me/\n"
    ))
    environ = {
        "PIP_INDEX_URL": "https://env.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://env2.example/simple",
        "https_proxy": "http://env-proxy:1",
        "http_proxy": "http://env-proxy:2",
        "SSL_CERT_FILE": "/env.pem",
        "LABCTL_WHEELHOUSE": "/env-wheels",
    }
    lab = load_lab(str(root), environ=environ)
    net = lab.settings.network
    assert net.index_url == "https://mirrors.example.cn/pypi/simple"
    assert net.extra_index_urls == ["https://mine.example/simple"]
    assert net.https_proxy == "http://10.0.0.1:3128"
    assert net.ca_bundle == "certs/corp.pem"
    assert lab.settings.wheelhouse == "wheels"
    # What labctl.yaml leaves unset still comes from the environment.
    assert net.http_proxy == "http://env-proxy:2"
    assert lab.image_tag("d2l") == "me/d2l:latest"
    # Relative paths in the settings are relative to the lab folder.
    assert lab.resolve_path(net.ca_bundle) == root.resolve() / "certs" / "corp.pem"


def test_invalid_url_in_the_environment(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={"PIP_INDEX_URL": "https://x.example/simple;id"})
    assert "environment" in info.value.message
    assert info.value.fix and "PIP_INDEX_URL" in info.value.fix


def test_invalid_settings_file(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", settings="netwrok: {}\n")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    err = info.value
    assert err.file == str(root.resolve() / SETTINGS_FILE)
    assert any("netwrok" in d and "did you mean 'network'" in d for d in err.details)
    assert err.fix


def test_invalid_settings_value(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", settings="network:\n  index_url: 'pypi simple'\n")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    assert any(d.startswith("network.index_url:") for d in info.value.details)
    assert info.value.file and info.value.file.endswith(SETTINGS_FILE)


# --- volumes ---------------------------------------------------------------------------


def test_invalid_volumes_file(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    (root / VOLUMES_FILE).write_text("volumes:\n  data:\n    host: data\n    container: data\n")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    err = info.value
    assert err.file == str(root.resolve() / VOLUMES_FILE)
    assert any(d.startswith("volumes.data.container:") for d in err.details)
    assert err.fix


def test_spec_naming_an_undefined_volume(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", specs={"mine": "volumes: [data, datasets]\n"})
    lab = load_lab(str(root), environ={})
    with pytest.raises(LabError) as info:
        lab.spec("mine")
    err = info.value
    assert err.file == str(lab.images_dir / "mine.yaml")
    assert "datasets" in err.message and "data," not in err.message
    assert err.fix and "data" in err.fix and "volumes.yaml" in err.fix


def test_volume_host_paths(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    lab = load_lab(str(root), environ={})
    assert lab.host_path(lab.volumes["data"]) == root.resolve() / "data"


def test_list_shows_an_invalid_spec_beside_the_valid_ones(tmp_path: Path) -> None:
    import json

    root = tmp_path / "lab"
    subprocess.run([sys.executable, "-m", "labctl", "init", str(root)], check=True,
                   capture_output=True)
    (root / "images" / "broken.yaml").write_text("pipp: [rich]\n")
    proc = subprocess.run([sys.executable, "-m", "labctl", "list", "--json"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "DOCKER_HOST":
                                                               "unix:///nonexistent"})
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["broken"]["state"] == "invalid" and "pipp" in rows["broken"]["error"]
    assert rows["d2l"]["state"] == "unknown"  # no engine: the valid specs still listed


# --- hardening: volumes, settings, files of another encoding ---------------------------------


def _volumes(root: Path, body: str) -> None:
    (root / VOLUMES_FILE).write_text("volumes:\n" + body)


@pytest.mark.parametrize("host", ["/", "/etc", "~root", "/var/run", "/home"])
def test_volume_host_folders_of_the_system_are_refused(tmp_path: Path, host: str) -> None:
    root = make_lab(tmp_path / "lab")
    _volumes(root, f"  data: {{host: '{host}', container: /data}}\n")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    assert info.value.file == str(root / VOLUMES_FILE) and "volumes.data.host" in info.value.message
    assert info.value.fix


def test_a_volume_host_link_to_the_system_is_refused(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    (root / "data").symlink_to("/etc")
    with pytest.raises(LabError, match="system folder"):
        load_lab(str(root), environ={})


@pytest.mark.parametrize(("body", "key"), [
    ("  data: {host: data, container: /data, subdirs: ['../../x']}\n", "subdirs"),
    ("  data: {host: data, container: /etc}\n", "container"),
    ("  data: {host: data, container: /data, env: {LABCTL_UID: '0'}}\n", "env"),
    ("  data: {host: data, container: /data, env: {X: '$HOME/x'}}\n", "env"),
])
def test_volume_values_are_validated(tmp_path: Path, body: str, key: str) -> None:
    root = make_lab(tmp_path / "lab")
    _volumes(root, body)
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    assert any(key in d for d in info.value.details), info.value.details


@pytest.mark.parametrize(("settings", "key"), [
    ("network: {https_proxy: 'http://x:1\\nRUN id'}\n", "https_proxy"),
    ("network: {http_proxy: 'not a url'}\n", "http_proxy"),
    ("network: {no_proxy: 'a;rm -rf /'}\n", "no_proxy"),
    ("tag_prefix: 'Bad Prefix/'\n", "tag_prefix"),
    ("bind: localhostt\n", "bind"),
    ("bind: ''\n", "bind"),
    ("registry: 'https://registry.example.edu/labs'\n", "registry"),
    ("registry: 'reg.example:5000/Class'\n", "registry"),
    ("registry: 'reg.example/labs\nRUN id'\n", "registry"),
    ("registry: 'myschool/labs'\n", "registry"),  # a Docker Hub account, not a host
])
def test_settings_values_are_validated(tmp_path: Path, settings: str, key: str) -> None:
    root = make_lab(tmp_path / "lab", settings)
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    assert info.value.file == str(root / SETTINGS_FILE)
    assert any(d.startswith(f"{key}:") or f".{key}:" in d for d in info.value.details)


def test_an_invalid_proxy_variable_is_named(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={"https_proxy": "http://x\nRUN id"})
    assert "https_proxy" in (info.value.fix or "")


def test_one_unreadable_spec_does_not_break_list(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", "tag_prefix: labctl-t/\n", {"good": "pip: [six]\n"})
    (root / "images" / "utf16.yaml").write_bytes("pip: [six]\n".encode("utf-16"))
    proc = run_cli("list", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    import json

    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["utf16"]["state"] == "invalid" and "UTF-16" in rows["utf16"]["error"]
    assert rows["good"]["state"] != "invalid"


def test_a_utf16_settings_file_is_one_clear_error(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab")
    (root / SETTINGS_FILE).write_bytes("bind: 127.0.0.1\n".encode("utf-16"))
    proc = run_cli("list", cwd=root)
    assert proc.returncode == 1 and "UTF-16" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_tag_is_refused_before_building(tmp_path: Path) -> None:
    root = make_lab(tmp_path / "lab", "", {"x": "pip: [six]\n"})
    proc = run_cli("build", "x", "--tag", "Bad Tag", cwd=root)
    assert proc.returncode == 1 and "--tag" in proc.stderr and "step" not in proc.stdout


def test_init_json(tmp_path: Path) -> None:
    import json

    proc = run_cli("init", str(tmp_path / "new"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lab"] == str((tmp_path / "new").resolve())
    assert any(f["path"].endswith("volumes.yaml") and f["written"] for f in out["files"])


@pytest.mark.parametrize(("value", "ref"), [
    ("127.0.0.1:5000", "127.0.0.1:5000/d2l:latest"),
    ("registry.example.edu/class/2026/", "registry.example.edu/class/2026/d2l:latest"),
    ("localhost:5000/labs", "localhost:5000/labs/d2l:latest"),
])
def test_a_registry_names_the_pushed_image(tmp_path: Path, value: str, ref: str) -> None:
    root = make_lab(tmp_path / "lab", f"registry: '{value.rstrip('/')}'\n")
    assert load_lab(str(root), environ={}).registry_ref("d2l") == ref
