"""`labctl export k8s` and `labctl export jupyterhub` on the shipped labs: the manifests
pass Kubernetes' own OpenAPI schemas in strict mode for the two newest releases
kubernetes-validate bundles, and KubeSpawner loads every profile of the snippet."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from kubernetes_validate.utils import all_versions, major_minor

from labctl.cli import cli

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (REPO / "images").glob("*.yaml"))


def newest_two() -> list[str]:
    minors: dict[str, str] = {}
    for v in all_versions():
        minors[major_minor(v)] = v
    return sorted(minors.values(), key=lambda v: tuple(int(x) for x in v.split(".")))[-2:]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("k8s") / "lab"
    shutil.copytree(REPO / "images", root / "images")
    shutil.copy(REPO / "volumes.yaml", root / "volumes.yaml")
    (root / "labctl.yaml").write_text("tag_prefix: labctl/\n")
    return root


def export(lab: Path, *args: str) -> list[dict]:
    res = CliRunner().invoke(cli, ["export", *args, "--lab", str(lab)])
    assert res.exit_code == 0, res.output
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.mark.parametrize("name", SHIPPED)
def test_manifests_pass_the_kubernetes_schemas(lab: Path, name: str) -> None:
    docs = export(lab, "k8s", name, "--registry", "registry.example:5000/labs")
    for version in newest_two():
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == 1 and "Service" in kinds and "Secret" in kinds
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == f"registry.example:5000/labs/{name}:latest"
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["fsGroup"]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert c["readinessProbe"]["httpGet"]["path"] == "/api"
    assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    claims = {d["metadata"]["name"]: d["spec"]["accessModes"] for d in docs
              if d["kind"] == "PersistentVolumeClaim"}
    assert claims["labctl-data"] == ["ReadWriteMany"]
    assert claims[f"labctl-{name}-work"] == ["ReadWriteOnce"]
    gpu = "nvidia.com/gpu" in c["resources"]["limits"]
    assert gpu == (pod.get("runtimeClassName") == "nvidia")
    assert gpu == (name not in ("yolo-cpu", "tf")), name  # the CPU labs ask for no GPU


def test_the_token_is_a_secret_mounted_where_the_image_reads_it(lab: Path) -> None:
    docs = export(lab, "k8s", "d2l")
    secret = next(d for d in docs if d["kind"] == "Secret")
    token = secret["stringData"]["token"]
    assert len(token) >= 32
    text = yaml.safe_dump_all(d for d in docs if d["kind"] != "Secret")
    assert token not in text  # nowhere but in the Secret
    c = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]
    assert {"name": "JUPYTER_TOKEN_FILE", "value": "/run/labctl/jupyter-token"} in c["env"]
    assert export(lab, "k8s", "d2l")[0]["stringData"]["token"] != token  # new each time


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def test_kubespawner_loads_every_profile(lab: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner's own profile handling (no cluster is contacted: the kubeconfig points
    nowhere, and loading a profile makes no API call)."""
    from kubernetes_asyncio.config import kube_config
    from kubespawner import KubeSpawner

    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    values = export(lab, "jupyterhub", *SHIPPED)[0]
    profiles = values["singleuser"]["profileList"]
    assert [p["display_name"] for p in profiles] == SHIPPED
    async def load(slug: str) -> KubeSpawner:  # a spawner lives in the hub's event loop
        spawner = KubeSpawner(_mock=True, profile_list=profiles)
        spawner.user_options = {"profile": slug}
        await spawner.load_user_options()
        return spawner

    for p in profiles:
        spawner = asyncio.run(load(p["slug"]))
        want = p["kubespawner_override"]
        assert spawner.image == want["image"] and spawner.uid == 1000
        assert spawner.fs_gid == 1000
        gpu = spawner.extra_resource_limits.get("nvidia.com/gpu")
        assert (gpu == "1") == (p["slug"] not in ("yolo-cpu", "tf")), p["slug"]
