"""`labctl hub`'s files, without an engine: jupyterhub_config.py loads in JupyterHub's own
config loader and applies a lab's profile to a real DockerSpawner; the hub's profiles and
the Kubernetes / zero-to-jupyterhub exports come from one profile model; the defaults are
safe on a real network (loopback, an admin approves sign-ups, no open login)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config.loader import PyFileConfigLoader

from labctl.config.lab import load_lab
from labctl.export import k8s
from labctl.export.profiles import lab_profile
from labctl.hub import files
from labctl.runtime.plan import SHM_SIZE

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (REPO / "images").glob("*.yaml"))
GPU_REQ = [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hub") / "lab"
    shutil.copytree(REPO / "images", root / "images")
    shutil.copy(REPO / "volumes.yaml", root / "volumes.yaml")
    (root / "labctl.yaml").write_text("tag_prefix: labctl/\n")
    return load_lab(str(root))


def _doc(lab, names: list[str], **settings) -> dict:
    profiles = [lab_profile(lab, lab.spec(n), f"labctl/{n}:hub-x") for n in names]
    hosts = {v: str(lab.host_path(lab.volumes[v])) for v in ("data", "cache")}
    place = files.HubPlace(hub_id="abcd1234", state=lab.root / ".labctl" / "hub",
                           network="labctl-hub-abcd1234", hub_ip="172.30.0.1",
                           proxy="/usr/bin/configurable-http-proxy")
    return files.settings_document(
        files.HubSettings(**{"admins": ["teacher"], **settings}), place, profiles,
        {p.name: p.image for p in profiles}, hosts, GPU_REQ)


def _load(folder: Path, doc: dict):
    folder.mkdir(parents=True, exist_ok=True)
    files.write(folder, doc)
    return PyFileConfigLoader(files.CONFIG_FILE, path=str(folder)).load_config()


def test_the_config_loads_and_listens_on_loopback_with_admin_approval(lab, tmp_path) -> None:
    doc = _doc(lab, ["d2l", "yolo-gpu"])
    cfg = _load(tmp_path / "hub", doc)
    assert cfg.JupyterHub.bind_url == "http://127.0.0.1:8000/"  # loopback unless told
    assert cfg.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert cfg.JupyterHub.hub_ip == cfg.JupyterHub.hub_connect_ip == "172.30.0.1"
    assert cfg.JupyterHub.authenticator_class == "native"
    assert cfg.NativeAuthenticator.open_signup is False  # an admin approves each learner
    assert cfg.Authenticator.admin_users == {"teacher"}
    culler = cfg.JupyterHub.services[0]
    assert culler["name"] == "idle-culler" and "--timeout=3600" in culler["command"]
    assert cfg.DockerSpawner.cmd == ["jupyterhub-singleuser"]
    assert cfg.DockerSpawner.network_name == "labctl-hub-abcd1234"
    assert "<select name='profile'" in cfg.Spawner.options_form  # two labs: a choice
    # the settings file is the teacher's alone; the template is copied, never rendered
    assert (tmp_path / "hub" / files.SETTINGS_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "hub" / files.CONFIG_FILE).read_bytes() == \
        files.hub_source(files.CONFIG_FILE).read_bytes()
    source = files.hub_source(files.CONFIG_FILE).read_text()
    assert "dummy" not in source.lower()  # no open login, not even as an option


def test_a_hostile_spec_description_is_text_in_the_lab_choice(lab, tmp_path) -> None:
    """A course's spec text reaches the hub's page as text, never as markup."""
    doc = _doc(lab, ["d2l", "yolo-gpu"])
    doc["profiles"][0]["description"] = "<script>alert(1)</script>' onfocus='x"
    doc["profiles"][1]["slug"] = "y'><img src=x onerror=alert(2)>"
    form = _load(tmp_path / "hub", doc).Spawner.options_form
    assert "<script>" not in form and "<img" not in form
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#x27; onfocus=&#x27;x" in form
    assert "value='y&#x27;&gt;&lt;img" in form


def test_bind_and_pam_are_the_teachers_choice(lab, tmp_path) -> None:
    cfg = _load(tmp_path / "hub", _doc(lab, ["d2l"], bind="0.0.0.0", port=9000, auth="pam",
                                       pam_group="students"))
    assert cfg.JupyterHub.bind_url == "http://0.0.0.0:9000/"
    assert cfg.JupyterHub.authenticator_class == "pam"
    assert cfg.PAMAuthenticator.allowed_groups == {"students"}
    assert "options_form" not in cfg.Spawner  # one lab: no choice to make


def test_native_login_without_an_admin_is_refused(lab) -> None:
    from labctl.errors import LabError

    with pytest.raises(LabError) as err:
        _doc(lab, ["d2l"], admins=[])
    assert "--admin" in (err.value.fix or "")


def test_a_profile_reaches_dockerspawner_as_the_k8s_export_says(lab, tmp_path) -> None:
    from dockerspawner import DockerSpawner

    doc = _doc(lab, ["yolo-cpu", "yolo-gpu"])
    cfg = _load(tmp_path / "hub", doc)
    values = k8s.jupyterhub_values([lab_profile(lab, lab.spec(n), f"labctl/{n}:hub-x")
                                    for n in ("yolo-cpu", "yolo-gpu")])["singleuser"]["profileList"]
    for slug, kube in zip(("yolo-cpu", "yolo-gpu"), values, strict=True):
        sp = DockerSpawner(user=SimpleNamespace(name="alice", url="/user/alice/"), config=cfg)
        sp.user_options = cfg.Spawner.options_from_form({"profile": [slug]})
        cfg.Spawner.pre_spawn_hook(sp)
        over = kube["kubespawner_override"]
        assert sp.image == over["image"] == f"labctl/{slug}:hub-x"
        assert sp.cpu_limit == over["cpu_limit"]
        assert sp.mem_limit == 8 << 30 and over["mem_limit"] == "8G"
        assert sp.extra_host_config["shm_size"] == 2 << 30 and SHM_SIZE == "2g"
        assert {k: v for k, v in sp.environment.items() if k != "LABCTL_WORKSPACE"} == \
            over["environment"]
        # the class's folders read-only, the learner's own as their named volumes
        binds = sp.volume_binds
        data = str(lab.root / "data")
        assert binds[data] == {"bind": "/data", "mode": "ro"}
        assert binds["labctl-hub-abcd1234-alice-work"] == {"bind": "/workspace", "mode": "rw"}
        assert all(b["mode"] == "rw" for k, b in binds.items() if k.startswith("labctl-hub-"))
        gpu = "extra_resource_limits" in over
        assert bool(sp.extra_host_config.get("device_requests")) == gpu == (slug == "yolo-gpu")
        assert "no-new-privileges" in sp.extra_host_config["security_opt"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_lab_has_one_profile_for_k8s_and_the_hub(lab, name: str) -> None:
    prof = lab_profile(lab, lab.spec(name), "img")
    assert k8s.kube_lab(lab, lab.spec(name), "img") == prof  # the same model, not a copy
    entry = files.profile_entry(prof, "img", {v: f"/host/{v}" for v in ("data", "cache")},
                                GPU_REQ)
    pod = next(d for d in k8s.manifests(prof, "t") if d["kind"] == "Deployment")
    c = pod["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["cpu"] == prof.cpu and entry["cpu_limit"] == float(prof.cpu)
    assert c["resources"]["limits"]["memory"] == prof.memory
    assert entry["mem_limit"] == prof.memory_bytes
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    hub_paths = set(entry["shared"].values()) | set(entry["own"].values())
    assert hub_paths == mounts - {"/dev/shm", "/run/labctl"}
    assert bool(entry["device_requests"]) == ("nvidia.com/gpu" in c["resources"]["limits"])


def test_the_hub_layer_pins_the_hubs_own_jupyterhub() -> None:
    reqs = files.requirements()
    assert set(reqs) == {"jupyterhub", "dockerspawner", "jupyterhub-nativeauthenticator",
                         "jupyterhub-idle-culler"}
    assert all(v and v[0].isdigit() for v in reqs.values())  # pinned, every one
    text = files.layer_dockerfile("sha256:abc", files.hub_version(), ["/workspace", "/models"])
    assert f'"jupyterhub=={reqs["jupyterhub"]}"' in text
    assert "install -d -o lab -g lab /models /workspace" in text
    assert files.hub_tag("labctl/d2l:latest", "5.5.4") == "labctl/d2l:hub-5.5.4"
    assert files.hub_tag("reg:5000/c/d2l", "5.5.4") == "reg:5000/c/d2l:hub-5.5.4"
    json.dumps(files.requirements())


def test_on_a_swarm_each_server_is_a_service_publishing_on_its_node(lab, tmp_path) -> None:
    """SwarmSpawner without the routing mesh (no IPVS needed): DNS round robin, the port
    published in host mode, the hub's API on the manager's swarm address."""
    doc = _doc(lab, ["d2l"], swarm=True)
    doc["hub_ip"], doc["network"] = "10.0.0.5", ""
    cfg = _load(tmp_path / "hub", doc)
    assert cfg.JupyterHub.spawner_class.__name__ == "LabSwarmSpawner"
    assert cfg.JupyterHub.hub_ip == cfg.JupyterHub.hub_connect_ip == "10.0.0.5"
    assert cfg.SwarmSpawner.use_internal_ip is False
    assert cfg.SwarmSpawner.extra_endpoint_spec == {
        "mode": "dnsrr", "ports": {None: (8888, "tcp", "host")}}
    assert cfg.Spawner.port == 8888


@pytest.mark.parametrize(("args", "says"), [
    (["--swarm", "--admin", "t"], "--swarm needs the class registry"),
    ([], "--admin NAME"),
])
def test_hub_write_refuses_before_building_anything(lab, args: list[str], says: str) -> None:
    from click.testing import CliRunner

    from labctl.cli import cli

    res = CliRunner().invoke(cli, ["hub", "write", "d2l", *args, "--lab", str(lab.root)])
    assert res.exit_code != 0 and says in res.output, res.output
    assert "Traceback" not in res.output


def test_the_teachers_own_config_plugs_in_another_login(lab, tmp_path) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / files.LOCAL_CONFIG).write_text(
        'c.JupyterHub.authenticator_class = "oauthenticator.GitHubOAuthenticator"\n')
    cfg = _load(folder, _doc(lab, ["d2l"]))
    assert cfg.JupyterHub.authenticator_class == "oauthenticator.GitHubOAuthenticator"
    assert cfg.DockerSpawner.cmd == ["jupyterhub-singleuser"]  # the rest stays labctl's
