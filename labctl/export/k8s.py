"""`labctl export k8s` and `labctl export jupyterhub`: the same lab for a cluster, from the
spec and lab folder `labctl run` uses. Pure: manifests as data, validated by the tests
against Kubernetes' own OpenAPI schemas and loaded by KubeSpawner's profile handling.

On Kubernetes the image's own `lab` user runs it (runAsUser, and fsGroup makes the volumes
writable); nothing is remapped and nothing runs as root. Shared volumes (data, cache) are
ReadWriteMany claims several learners mount; the work folder and models are each learner's
own (ReadWriteOnce). The Jupyter token is a Secret mounted where the image reads it.
"""

from __future__ import annotations

from typing import Any

from labctl.export.profiles import GPU_RESOURCE, SHARED, dns_name
from labctl.export.profiles import LabProfile as KubeLab
from labctl.export.profiles import lab_profile as kube_lab
from labctl.runtime.plan import LAB_UID, TOKEN_IN_CONTAINER

__all__ = ["GPU_RESOURCE", "SHARED", "KubeLab", "dns_name", "jupyterhub_values", "kube_lab",
           "manifests"]


def _claim(name: str, size: str, shared: bool, meta: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name,
                                                                          **meta},
            "spec": {"accessModes": ["ReadWriteMany" if shared else "ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}}}


def _storage(lab: KubeLab, name: str, meta: dict[str, Any]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(claims, volumes, mounts) of the lab's folders and /dev/shm: kept apart from the
    pod so the token's volume and mount can join the lists after them."""
    docs: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    claims = {**lab.volumes, "work": lab.workdir}
    for vol, path in claims.items():
        shared = vol in SHARED
        claim = f"labctl-{dns_name(vol)}" if shared else f"{name}-{dns_name(vol)}"
        # a shared claim belongs to no one lab: only the part-of label
        docs.append(_claim(claim, lab.storage.get(vol, "10Gi"), shared, {
            **meta, "labels": {"app.kubernetes.io/part-of": "labctl"}} if shared else meta))
        volumes.append({"name": dns_name(vol), "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": dns_name(vol), "mountPath": path})
    volumes.append({"name": "shm", "emptyDir": {"medium": "Memory",
                                                 "sizeLimit": lab.shm.upper() + "i"}})
    mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    return docs, volumes, mounts


def _container(lab: KubeLab, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab's container, unprivileged; Jupyter's port and token are added by the caller
    only when the lab serves Jupyter."""
    return {
        "name": "lab", "image": lab.image, "args": list(lab.command),  # the entrypoint stays
        "workingDir": lab.workdir,
        "env": [{"name": k, "value": v} for k, v in sorted(lab.env.items())],
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                      "limits": {"cpu": lab.cpu, "memory": lab.memory,
                                 **({GPU_RESOURCE: "1"} if lab.gpu else {})}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def manifests(lab: KubeLab, token: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Secret, claims, Deployment and Service of one lab."""
    name = f"labctl-{dns_name(lab.name)}"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "labctl"}
    meta = {"labels": labels, **({"namespace": namespace} if namespace else {})}
    docs, volumes, mounts = _storage(lab, name, meta)
    # the container holds `mounts` itself: the token's mount below lands in it too
    container = _container(lab, mounts)
    if lab.jupyter_port is not None:
        secret = f"{name}-token"
        docs.insert(0, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": secret, **meta}, "stringData": {"token": token}})
        folder, file = TOKEN_IN_CONTAINER.rsplit("/", 1)
        volumes.append({"name": "token", "secret": {
            "secretName": secret, "defaultMode": 0o400, "items": [{"key": "token",
                                                                   "path": file}]}})
        mounts.append({"name": "token", "mountPath": folder, "readOnly": True})
        container["env"].append({"name": "JUPYTER_TOKEN_FILE", "value": TOKEN_IN_CONTAINER})
        container["ports"] = [{"name": "jupyter", "containerPort": lab.jupyter_port}]
        container["readinessProbe"] = {"httpGet": {"path": "/api", "port": "jupyter"},
                                       "initialDelaySeconds": 5, "periodSeconds": 10}
    pod: dict[str, Any] = {
        "securityContext": {"runAsUser": LAB_UID, "runAsGroup": LAB_UID, "fsGroup": LAB_UID,
                            "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "containers": [container], "volumes": volumes,
    }
    if lab.gpu:
        pod["runtimeClassName"] = "nvidia"
    docs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": name, **meta},
                 "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                          "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                          "template": {"metadata": {"labels": labels}, "spec": pod}}})
    if lab.jupyter_port is not None:
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, **meta},
                     "spec": {"type": "ClusterIP",
                              "selector": {"app.kubernetes.io/name": name},
                              "ports": [{"name": "jupyter", "port": lab.jupyter_port,
                                         "targetPort": "jupyter"}]}})
    return docs


def jupyterhub_values(labs: list[KubeLab]) -> dict[str, Any]:
    """A zero-to-jupyterhub values snippet: one profile per lab. JupyterHub starts the
    single-user server itself (the image's jupyterlab has jupyterhub-singleuser once the
    spec lists jupyterhub), as the image's lab user; shared folders come from the chart's
    own storage settings."""
    profiles = []
    for i, lab in enumerate(labs):
        override: dict[str, Any] = {"image": lab.image, "cpu_limit": float(lab.cpu),
                                    "mem_limit": lab.memory.replace("Gi", "G"),
                                    "uid": LAB_UID, "fs_gid": LAB_UID,
                                    "environment": dict(sorted(lab.env.items()))}
        if lab.gpu:
            override["extra_resource_limits"] = {GPU_RESOURCE: "1"}
            override["extra_pod_config"] = {"runtimeClassName": "nvidia"}
        profiles.append({"display_name": lab.name, "slug": dns_name(lab.name),
                         "description": lab.description, "default": i == 0,
                         "kubespawner_override": override})
    return {"singleuser": {"uid": LAB_UID, "fsGid": LAB_UID, "profileList": profiles}}
