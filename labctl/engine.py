"""Every docker SDK call labctl makes, and the translation of engine errors into
messages a learner can act on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import docker
import docker.errors
import requests

from labctl.errors import LabError

LABEL_PREFIX = "org.labctl."


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def explain(exc: Exception) -> LabError:
    """Turn a docker SDK / requests exception into a one-screen LabError."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, PermissionError) or "permission denied" in low:
        return LabError(
            f"permission denied talking to the Docker engine at {_where()}",
            fix="add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in "
            "again) or use rootless Docker",
        )
    if "no space left on device" in low:
        return LabError(
            "the Docker engine ran out of disk space",
            fix="free space with `docker system prune` (removes stopped containers and unused "
            "images) and check `docker system df`",
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, FileNotFoundError)) or (
        "connection refused" in low or "no such file or directory" in low or "connection aborted"
        in low
    ):
        return LabError(
            f"no Docker engine answers at {_where()}",
            fix="start it (`sudo systemctl start docker`, or `sudo dockerd &`), or install it "
            "with `sudo apt-get install docker.io`; `labctl doctor` checks the setup",
        )
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return LabError(f"the Docker engine said: {exc.explanation}")
    return LabError(f"Docker engine error: {text}")


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise engine errors as LabError."""
    try:
        yield
    except LabError:
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise explain(e) from None


class Engine:
    """A connected Docker engine. Create with :meth:`connect`."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api
        self._info: dict[str, Any] | None = None

    @classmethod
    def connect(cls, timeout: int = 600) -> Engine:
        with translated():
            client = docker.from_env(timeout=timeout)
            client.ping()
        return cls(client)

    # --- engine facts -------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        if self._info is None:
            with translated():
                self._info = self.api.info()
        return self._info

    def version(self) -> dict[str, Any]:
        with translated():
            return self.api.version()

    def is_rootless(self) -> bool:
        return any("rootless" in s for s in self.info().get("SecurityOptions") or [])

    def gpu_runtimes(self) -> list[str]:
        return [r for r in (self.info().get("Runtimes") or {}) if "nvidia" in r]

    def cdi_spec_dirs(self) -> list[str]:
        return list(self.info().get("CDISpecDirs") or [])

    # --- images -------------------------------------------------------------------
    def image(self, ref: str) -> Any | None:
        with translated():
            try:
                return self.client.images.get(ref)
            except docker.errors.ImageNotFound:
                return None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        img = self.image(ref)
        return None if img is None else dict(img.labels or {})

    def images(self, label: str) -> list[Any]:
        with translated():
            return self.client.images.list(filters={"label": label})

    def pull(self, ref: str) -> bool:
        """Try to pull; False (not an error) when no registry answers."""
        try:
            self.client.images.pull(ref)
            return True
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def build(
        self,
        fileobj: IO[bytes],
        *,
        buildargs: dict[str, str],
        labels: dict[str, str],
        nocache: bool = False,
        pull: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Stream the classic builder's JSON events. The image is left untagged: the caller
        tags it only after the whole build (and its checks) succeeded."""
        with translated():
            yield from self.api.build(
                fileobj=fileobj,
                custom_context=True,
                encoding="identity",
                buildargs=buildargs,
                labels=labels,
                nocache=nocache,
                pull=pull,
                rm=True,
                forcerm=True,
                decode=True,
            )

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        with translated():
            self.api.tag(image_id, repo, tag)

    def remove_image(self, ref: str) -> None:
        with translated(), _ignore_missing():
            self.api.remove_image(ref)

    def import_image(self, stream: IO[bytes], ref: str, changes: list[str]) -> str:
        repo, _, tag = ref.rpartition(":")
        # A generator, not the file: docker-py sends 'Transfer-Encoding: chunked', and only
        # a generator makes requests actually chunk the body.
        chunks = iter(lambda: stream.read(1 << 20), b"")
        with translated():
            out = self.api.import_image_from_stream(chunks, repository=repo, tag=tag,
                                                    changes=changes)
        return str(out)

    def history(self, ref: str) -> list[dict[str, Any]]:
        with translated():
            return self.api.history(ref)

    def containers(self, label: str, all: bool = True) -> list[Any]:
        with translated():
            return self.client.containers.list(all=all, filters={"label": label})

    def dangling_build_containers(self) -> list[Any]:
        """Containers the classic builder leaves behind when a build is interrupted."""
        with translated():
            return [
                c
                for c in self.client.containers.list(all=True, filters={"status": "exited"})
                + self.client.containers.list(filters={"status": "running"})
                if not c.labels and c.attrs.get("Config", {}).get("Image", "").startswith("sha256")
            ]


@contextmanager
def _ignore_missing() -> Iterator[None]:
    try:
        yield
    except docker.errors.NotFound:
        pass
