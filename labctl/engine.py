"""Every docker SDK call labctl makes, and the translation of engine errors into
messages a learner can act on."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

import docker
import docker.errors
import requests
import urllib3
from docker.utils import version_gte

from labctl import labels
from labctl.chains import chain_ids
from labctl.errors import LabError, advise

# Sources a container of labctl's never mounts: the engine's socket is root on the host.
_ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


class Bind(NamedTuple):
    """A host folder (or, with ``volume``, a named volume) at ``target``."""
    source: str
    target: str
    read_only: bool = False
    volume: bool = False


@dataclass
class ContainerSpec:
    """A lab's container in plain values (runtime.run makes it from its RunPlan)."""
    image: str
    command: list[str]
    name: str
    env: dict[str, str]
    binds: list[Bind]
    publish: dict[int, list[tuple[str, int]]]  # container port -> (host address, port)
    workdir: str
    labels: dict[str, str] = field(default_factory=dict)
    gpus: str = ""  # "" | "runtime" | "cdi"
    shm_size: str | None = None
    network: str | None = None  # None: the engine's default bridge
    tty: bool = False


# How a container gets the GPU: the NVIDIA runtime (--gpus all), or CDI device names.
_DEVICE_REQUESTS = {
    "runtime": lambda: [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
    "cdi": lambda: [docker.types.DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=all"])],
}


def _devices(gpus: str) -> list[Any] | None:
    """The device requests of a GPU mode ("", "none", "runtime", "cdi")."""
    return _DEVICE_REQUESTS[gpus]() if gpus in _DEVICE_REQUESTS else None


def endpoint(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(the engine address, where it comes from), resolved as docker-py's from_env and the
    docker CLI do: DOCKER_HOST, then DOCKER_CONTEXT, then the CLI's current context."""
    from docker.context import ContextAPI
    from docker.context.config import get_current_context_name

    env = os.environ if environ is None else environ
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"], "DOCKER_HOST"
    name = env.get("DOCKER_CONTEXT") or get_current_context_name() or "default"
    if name != "default":
        try:
            ctx = ContextAPI.get_context(name)
        except docker.errors.DockerException:
            ctx = None
        if ctx is not None and ctx.Host:
            return ctx.Host, f"docker context '{name}'"
    return "unix:///var/run/docker.sock", "default"


def is_engine_error(exc: BaseException) -> bool:
    """An exception of the docker SDK or of requests (which are OSErrors too, so callers
    must ask this before treating an OSError as a file problem)."""
    return isinstance(exc, (docker.errors.DockerException, requests.exceptions.RequestException))


def explain(exc: Exception) -> LabError:
    """Turn a docker SDK / requests exception into a one-screen LabError: the meaning of
    its words from the error table, else the engine's own answer as it is."""
    where = endpoint()[0]
    text = str(exc)
    found = advise(text, "engine", engine=where)
    if isinstance(exc, PermissionError) and found is None:
        found = advise("permission denied", "engine", engine=where)
    if found is not None and (found.id != "engine-permission"
                              or not isinstance(exc, docker.errors.APIError)):
        return LabError(found.message, id=found.id, fix=found.fix, details=[text.strip()[:300]])
    if isinstance(exc, docker.errors.APIError):
        return LabError(f"the Docker engine said: {exc.explanation or text}", id="engine.api-error")
    if isinstance(exc, (requests.exceptions.ConnectionError, FileNotFoundError,
                        docker.errors.DockerException)):
        return LabError(
            f"no Docker engine answers at {where}", id="engine.not-answering",
            fix="start it (`sudo systemctl start docker`, or `sudo dockerd &`), or install it "
            "with `sudo apt-get install docker.io`; `labctl doctor` checks the setup",
        )
    return LabError(f"Docker engine error: {text}", id="engine.unexpected-error")


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise engine errors as LabError."""
    try:
        yield
    except LabError:
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise explain(e) from None


class Export:
    """The engine's export of some images, as chunks (the request goes out when it is first
    iterated). close(), from any thread, drops the connection: the engine stops exporting,
    and a reader blocked on it returns."""

    def __init__(self, api: docker.APIClient, refs: list[str], chunk: int) -> None:
        self._api, self._refs, self._chunk = api, refs, chunk
        self._res: Any = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        with translated():
            res = self._api._get(self._api._url("/images/get"), params={"names": self._refs},
                                 stream=True)
            self._res = res
            if self._closed:
                res.close()
                return
            self._api._raise_for_status(res)
            # raw.read fills whole chunks across the engine's 32 KiB HTTP chunks, which
            # iter_content would hand on one by one (thirty times the hand-overs); its
            # errors are urllib3's, which iter_content would have made requests'
            try:
                yield from iter(lambda: res.raw.read(self._chunk), b"")
            except urllib3.exceptions.HTTPError as e:
                raise requests.exceptions.ConnectionError(e) from e

    def close(self) -> None:
        self._closed = True
        if self._res is not None:
            self._res.close()


class Engine:
    """A connected Docker engine. Create with :meth:`connect`."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api
        self._info: dict[str, Any] | None = None

    @classmethod
    def connect(cls, timeout: int = 600) -> Engine:
        """The engine DOCKER_HOST or the docker context names (docker-py alone reads only
        DOCKER_HOST); ssh:// through the system ssh client, so ~/.ssh/config, keys and
        agents work as they do for `docker`."""
        address, source = endpoint()
        with translated():
            if address.startswith("ssh://"):
                client = _ssh_client(address, timeout)
            elif source.startswith("docker context"):
                client = docker.DockerClient(base_url=address, timeout=timeout)
            else:
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

    def is_local(self) -> bool:
        """Reached through a unix socket on this machine (docker-py names that base URL
        http+docker://localhost), so host paths mean the same to the engine. (ssh:// is
        http+docker://ssh: another machine, even when it is this one under another name.)"""
        return str(self.api.base_url).startswith("http+docker://localhost")

    def config_no_proxy(self) -> str:
        """noProxy from the Docker CLI config, which docker-py adds to every build."""
        return getattr(getattr(self.api, "_proxy_configs", None), "no_proxy", None) or ""

    def gpu_runtimes(self) -> list[str]:
        return [r for r in (self.info().get("Runtimes") or {}) if "nvidia" in r]

    def host_label(self) -> str:
        """Which machine the engine runs on (its name), for labels that name a process."""
        return str(self.info().get("Name") or "")

    def cdi_spec_dirs(self) -> list[str]:
        return list(self.info().get("CDISpecDirs") or [])

    # --- images -------------------------------------------------------------------
    def image(self, ref: str) -> Any | None:
        return self._get(self.client.images, ref)

    def image_labels(self, ref: str) -> dict[str, str] | None:
        img = self.image(ref)
        return None if img is None else dict(img.labels or {})

    def push(self, ref: str, on_progress: Callable[[str, int, int | None], None] | None = None
             ) -> str:
        """Push ``ref``; returns its digest in the registry. The registry's credentials come
        from the docker config (docker-py reads it), and are never printed."""
        repo, _, tag = ref.rpartition(":")
        digest = ""
        with translated():
            for ev in self.api.push(repo, tag=tag, stream=True, decode=True):
                if ev.get("error"):
                    raise LabError(f"pushing {ref} failed: {ev['error']}", id="engine.push-failed",
                                   fix="log in to the registry (`docker login HOST`), or"
                                       " check --registry / registry: in labctl.yaml")
                detail = ev.get("progressDetail") or {}
                if on_progress and ev.get("id") and detail.get("current") is not None:
                    on_progress(f"layer {ev['id']}", int(detail["current"]),
                                detail.get("total"))
                aux = ev.get("aux") or {}
                digest = aux.get("Digest", digest)
        return digest

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
        nocache: bool = False,
        pull: bool = False,
        network_mode: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream the classic builder's JSON events. The image is left untagged: the caller
        tags it only after the whole build (and its checks) succeeded."""
        with translated():
            yield from self.api.build(
                fileobj=fileobj,
                custom_context=True,
                encoding="identity",
                buildargs=buildargs,
                network_mode=network_mode,
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

    def import_image(self, stream: IO[bytes], ref: str, changes: list[str]) -> str:
        repo, _, tag = ref.rpartition(":")
        # A generator, not the file: docker-py sends 'Transfer-Encoding: chunked', and only
        # a generator makes requests actually chunk the body.
        chunks = iter(lambda: stream.read(1 << 20), b"")
        with translated():
            out = self.api.import_image_from_stream(chunks, repository=repo, tag=tag,
                                                    changes=changes)
        return str(out)

    def save_images(self, refs: list[str], chunk: int = 1 << 20) -> Export:
        """`docker save` of several images as one stream: the engine stores each layer once
        however many of them share it. docker-py saves one image at a time, so this calls
        the API's multi-image form itself."""
        return Export(self.api, refs, chunk)

    def load_images(self, chunks: Iterator[bytes | memoryview]) -> list[str]:
        """`docker load` from a stream (a generator, so the body is sent chunked); the
        engine's "Loaded image" lines. A layer the engine already has is not read again."""
        out: list[str] = []
        with translated():
            for ev in self.api.load_image(chunks):
                if ev.get("error") or ev.get("errorDetail"):
                    raise LabError(f"the engine refused the images: {ev.get('error')}",
                                   id="engine.load-refused",
                                   fix="see `labctl doctor`; nothing of this lab was tagged")
                if "stream" in ev and ev["stream"].strip():
                    out.append(ev["stream"].strip())
        return out

    def unique_size(self, sizes: dict[str, int]) -> int:
        """About how many bytes these images (id -> size, as inspected) hold together, each
        shared layer once (from the engine's disk usage: an image's size and the part it
        shares). It only sizes a progress bar, so when the engine cannot answer (20.10
        fails the whole report when one build-cache record is stale) the images' summed
        sizes stand in."""
        params = {"type": "image"} if version_gte(self.api.api_version, "1.42") else None
        try:
            with translated():
                res = self.api._get(self.api._url("/system/df"), params=params)
                rows = {i["Id"]: i for i in self.api._result(res, json=True).get("Images")
                        or []}
        except LabError:
            rows = {}
        pairs = [(int(rows[i]["Size"]), max(int(rows[i].get("SharedSize") or 0), 0))
                 if i in rows else (size, 0) for i, size in sizes.items()]
        if not pairs:
            return 0
        return sum(size - shared for size, shared in pairs) + max(sh for _, sh in pairs)

    def chains_present(self) -> set[str]:
        """The chain id of every layer stack the engine's images hold: a load can leave out
        a layer whose stack is among them, and must have one a bundle left out. The
        top-level images are enough (an intermediate image's stack is the bottom of its
        child's): one inspect each."""
        out: set[str] = set()
        with translated():
            for row in self.api.images():
                with _ignore_missing():  # removed meanwhile
                    img = self.api.inspect_image(row["Id"])
                    out.update(chain_ids((img.get("RootFS") or {}).get("Layers") or []))
        return out

    # --- disk use (labctl df / prune) -----------------------------------------------
    def disk_usage(self) -> dict[str, Any]:
        """The engine's own `docker system df -v`: images (Size, SharedSize), containers,
        volumes and BuildKit's cache records."""
        with translated():
            return dict(self.api.df())

    def image_rows(self, with_labels: list[str] | None = None) -> list[dict[str, Any]]:
        """Every image (or those with every label of ``with_labels``), tagged or dangling,
        not the classic builder's intermediates: Id, RepoTags, Labels, Size, Created."""
        with translated():
            return list(self.api.images(filters={"label": with_labels} if with_labels
                                        else None))

    def inspect_image(self, image_id: str) -> dict[str, Any] | None:
        with translated(), _ignore_missing():
            return dict(self.api.inspect_image(image_id))
        return None

    def history(self, image_id: str) -> list[dict[str, Any]]:
        """`docker history`: newest first, each step's Size (0 for a step with no layer)."""
        with translated(), _ignore_missing():
            return list(self.api.history(image_id))
        return []

    def container_rows(self, size: bool = False) -> list[dict[str, Any]]:
        """Every container (running or not): Id, Names, ImageID, State, Labels, and with
        ``size`` SizeRw (the engine then measures each one: slower)."""
        with translated():
            return list(self.api.containers(all=True, size=size))

    def remove_image_id(self, image_id: str) -> bool:
        """Remove one image by id, never forced: False when the engine refuses (a
        container uses it, another tag or a child needs it) or it is gone already."""
        try:
            with translated():
                self.api.remove_image(image_id, force=False, noprune=False)
            return True
        except LabError:
            return False

    def prune_build_records(self, ids: list[str]) -> int:
        """Remove these BuildKit cache records (their ids from disk_usage), and no other;
        the bytes the engine says it reclaimed. One id a call: the prune API takes one
        filter value, matched as a pattern, so each is anchored."""
        freed = 0
        with translated():
            for rid in ids:
                if not rid.isalnum():
                    continue
                res = self.api.prune_builds(filters={"id": f"^{rid}$"}, all=True)
                freed += int((res or {}).get("SpaceReclaimed") or 0)
        return freed

    def data_root_free(self) -> tuple[str, int | None]:
        """(the engine's data root, bytes free on its file system); None when that is
        not visible from here (an engine on another machine, Docker Desktop's VM)."""
        root = str(self.info().get("DockerRootDir") or "")
        if not root or not self.is_local():
            return root, None
        try:
            return root, shutil.disk_usage(root).free
        except OSError:
            return root, None

    def shares_layers_by_chain(self) -> bool:
        """Whether `docker load` takes a layer it already has (by chain id) without reading
        that layer's file: true of Docker Engine's classic image store, and asked of it by
        name. The containerd image store imports the archive as content, and Podman's
        docker-archive import wants every file, so both are sent everything."""
        components = {c.get("Name") for c in self.version().get("Components") or []}
        status = dict(tuple(r) for r in self.info().get("DriverStatus") or [] if len(r) == 2)
        return "Engine" in components and "containerd" not in status.get("driver-type", "")

    def containers(self, with_labels: list[str], all: bool = True) -> list[Any]:
        """Containers carrying every label of ``with_labels`` ("key" or "key=value"). One
        removed between the engine's list and its inspect (a --rm lab ending) is left out,
        not an error."""
        with translated():
            return self.client.containers.list(all=all, filters={"label": with_labels},
                                               ignore_removed=True)

    def stop_build_containers(self, layer: str) -> int:
        """Kill and remove the classic builder's containers that run from ``layer``."""
        if not layer:
            return 0
        n = 0
        with translated():
            for c in self.client.containers.list(all=True, filters={"ancestor": layer},
                                                 ignore_removed=True):
                if c.attrs.get("Image", "").removeprefix("sha256:").startswith(layer):
                    with _ignore_missing():
                        c.remove(force=True)
                        n += 1
        return n

    @contextmanager
    def serving(self, image: str, mounts: dict[str, str], cmd: list[str], *,
                user: str | None = None, ready_timeout: float = 30) -> Iterator[str]:
        """Run the HTTP server ``cmd`` in a container of its own, host folders mounted
        read-only (container path -> host path), and yield the network mode that runs a
        build's RUN steps in that container's network namespace: they reach the server on
        127.0.0.1 while the host's network stays out of the build. The server says
        "Serving HTTP" when it listens. The container is removed afterwards, on Ctrl-C
        too."""
        self._remove_orphans("serve")
        binds = [docker.types.Mount(target, source, type="bind", read_only=True)
                 for target, source in mounts.items()]
        with self._throwaway("serve") as name:
            with translated():
                c = self._create(image, cmd, throwaway="serve", entrypoint=[], name=name,
                                 mounts=binds, user=user, cap_drop=["ALL"])
                c.start()
                deadline = time.monotonic() + ready_timeout
                while b"Serving HTTP" not in c.logs():
                    c.reload()
                    if c.status != "running" or time.monotonic() > deadline:
                        raise LabError(
                            "the build's helper container did not start",
                            id="engine.build-helper-failed",
                            details=c.logs().decode(errors="replace").splitlines()[-5:],
                            fix="make every wheel in the wheelhouse a file you can read (not"
                            " a link to elsewhere), then build again",
                        )
                    time.sleep(0.05)
            yield f"container:{c.id}"

    @contextmanager
    def _throwaway(self, label: str) -> Iterator[str]:
        """The name for a throw-away container, labctl-LABEL-PID-N (``_remove_orphans``
        reads the PID back), and its removal when the block ends: on errors and Ctrl-C
        too, and when the engine made it before a create call timed out."""
        name = f"labctl-{label}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            yield name
        finally:
            with suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                self.api.remove_container(name, force=True)

    def _remove_orphans(self, label: str) -> None:
        """Remove this host's labctl-LABEL-PID-* containers whose labctl process is gone
        (killed before it could clean up)."""
        with translated():
            found = self.client.containers.list(
                all=True, filters={"label": labels.throwaway(label)}, ignore_removed=True)
        for c in found:
            parts = c.name.split("-")
            if len(parts) < 3 or not parts[2].isdigit():
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # its labctl still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # a process of another user: alive
            with translated(), _ignore_missing():
                c.remove(force=True)

    # --- containers -------------------------------------------------------------------
    def container(self, name: str) -> Any | None:
        return self._get(self.client.containers, name)

    @staticmethod
    def _get(collection: Any, ref: str) -> Any | None:
        """An image or container by name, or None when there is none."""
        with translated():
            try:
                return collection.get(ref)
            except docker.errors.NotFound:  # ImageNotFound is one too
                return None

    def create_container(self, spec: ContainerSpec,
                         next_name: Callable[[str], str] | None = None) -> Any:
        """Create (not start) a lab's container. When its name is taken meanwhile (two labs
        started at once), ``next_name`` gives the next one to try; the container's own
        ``name`` says which it got."""
        mounts = [docker.types.Mount(b.target, b.source, read_only=b.read_only,
                                     type="volume" if b.volume else "bind") for b in spec.binds]
        ports = {f"{cport}/tcp": binds if len(binds) > 1 else binds[0]
                 for cport, binds in spec.publish.items()}
        name = spec.name
        for _ in range(20):
            with translated():
                try:
                    return self._create(
                        spec.image, spec.command, name=name, environment=spec.env,
                        mounts=mounts, ports=ports, working_dir=spec.workdir,
                        labels=spec.labels, device_requests=_devices(spec.gpus),
                        shm_size=spec.shm_size, tty=spec.tty, stdin_open=spec.tty,
                        network_mode=spec.network)
                except docker.errors.APIError as e:
                    if e.status_code == 409 and next_name is not None:
                        name = next_name(name)
                        continue
                    raise explain(e) from None
        raise LabError(f"no free container name after {name}", id="engine.no-free-name",
                       fix="stop labs you no longer use: `labctl stop --all`")

    def _create(self, image: str, command: list[str] | None, *, throwaway: str = "",
                **options: Any) -> Any:
        """Every container labctl makes is created here: never privileged, never with the
        engine's socket, no-new-privileges; a throw-away one (``throwaway``: its kind)
        carries the label `_remove_orphans` finds it by."""
        sources = [str(m.get("Source", "")) for m in options.get("mounts") or []]
        if options.pop("privileged", False) or any(s in _ENGINE_SOCKETS for s in sources):
            raise LabError("labctl does not make privileged containers or mount the engine's"
                           " socket", id="engine.privileged-refused",
                           fix="report this as a labctl bug")
        if throwaway:
            options["labels"] = {**options.get("labels", {}), labels.throwaway(throwaway): "1"}
        return self.client.containers.create(image, command, detach=True,
                                             security_opt=["no-new-privileges"], **options)

    def file_of(self, container: Any, path: str, limit: int = 1 << 20) -> bytes | None:
        """The regular file at ``path`` in a (created) container, None when there is none
        there or it is larger than ``limit`` bytes."""
        import io
        import tarfile

        with translated():
            try:
                stream, stat = container.get_archive(path)
            except docker.errors.NotFound:
                return None
            if int(stat.get("size", limit + 1)) > limit:
                return None
            data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            f = tar.extractfile(member) if member is not None and member.isreg() else None
            return f.read() if f is not None else None

    def start(self, container: Any) -> None:
        with translated():
            container.start()

    def remove_container(self, container: Any) -> None:
        with translated(), _ignore_missing():
            try:
                container.remove(force=True)
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    raise
                for _ in range(20):  # the engine is removing it already: wait for that
                    time.sleep(0.5)
                    container.reload()  # NotFound once it is gone

    def stop_container(self, container: Any, timeout: int = 10) -> None:
        with translated(), _ignore_missing():
            container.stop(timeout=timeout)

    def probe(self, image: str, command: list[str], *, gpus: str = "none",
              timeout: int = 180) -> tuple[int, str]:
        """Run ``command`` in a throw-away container with no network; (exit status, output),
        124 past ``timeout``. ``gpus``: none, runtime (like --gpus all) or cdi."""
        status, out, err = self.run_capture(image, command, gpus=gpus, network=False,
                                            timeout=timeout, label="probe")
        return status, out + err

    def run_to_end(self, container: Any, timeout: float) -> tuple[int | None, str]:
        """Start a created container, wait for it (None on timeout), return its output."""
        self.start(container)
        with translated():
            try:
                code: int | None = int(container.wait(timeout=timeout).get("StatusCode", 1))
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError):
                code = None
                self.stop_container(container, timeout=2)
            out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return code, out

    def run_capture(
        self,
        image: str,
        command: list[str],
        *,
        read_only_mounts: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        network: bool = True,
        gpus: str = "none",
        timeout: float = 1800,
        label: str = "run",
    ) -> tuple[int, str, str]:
        """Run ``command`` (as the entrypoint) in a throw-away container and return (exit
        status, stdout, stderr), apart, so that results can be read from stdout while
        progress and errors go to stderr. Host folders are mounted read-only (host path ->
        container path): the container writes nothing on the host. 124 on timeout."""
        mounts = [
            docker.types.Mount(target, source, type="bind", read_only=True)
            for source, target in (read_only_mounts or {}).items()
        ]
        with self._throwaway(label) as name, translated():
            c = self._create(
                image, command[1:], throwaway=label, entrypoint=command[:1], name=name,
                mounts=mounts, environment=environment or {}, network_disabled=not network,
                device_requests=_devices(gpus))
            c.start()
            try:
                status = int(c.wait(timeout=timeout).get("StatusCode", 1))
            except requests.exceptions.RequestException:
                status = 124
            out = c.logs(stdout=True, stderr=False).decode(errors="replace")
            err = c.logs(stdout=False, stderr=True).decode(errors="replace")
        if status == 124:
            err += f"\nno answer within {timeout:.0f} s"
        return status, out, err

    def make_host_folders(self, image: str, folders: list[str], archive: bytes | None,
                          user: str) -> None:
        """Make folders on the engine's machine (mkdir -p) as ``user``, in a throw-away
        container with that machine's / at /host, no network and no capabilities; then
        put ``archive`` (a tar of absolute paths) there. For an engine on another machine,
        where labctl cannot mkdir itself and the engine would make a missing bind source
        as root."""
        root = docker.types.Mount("/host", "/", type="bind")
        with self._throwaway("folders") as name, translated():
            c = self._create(
                image, ["-p", "--", *(f"/host{f}" for f in folders)], throwaway="folders",
                entrypoint=["mkdir"], name=name, mounts=[root], user=user,
                network_disabled=True, cap_drop=["ALL"], read_only=True)
            c.start()
            status = int(c.wait(timeout=120).get("StatusCode", 1))
            if status != 0:
                raise LabError(
                    "could not make the lab's folders on the engine's machine",
                    id="engine.remote-folders-failed",
                    details=c.logs().decode(errors="replace").strip().splitlines()[-3:],
                    fix="set remote_root: in labctl.yaml to a folder of yours there")
            if archive is not None:
                c.put_archive("/host", archive)

    def fill_volume(self, image: str, volume: str, chunks: Iterator[bytes], owner: str,
                    labels_: dict[str, str]) -> None:
        """A new named volume holding the tar ``chunks`` (what --sync copies in), its top
        folder owned by ``owner`` (uid:gid) as the folder it stands for is."""
        with translated():
            self.client.volumes.create(volume, labels=labels_)
            with self._volume_helper(image, volume, ["chown", owner, "/sync"]) as c:
                c.start()
                if int(c.wait(timeout=120).get("StatusCode", 1)) != 0:
                    raise LabError(f"could not prepare the volume {volume}",
                                   id="engine.volume-prep-failed",
                                   details=c.logs().decode(errors="replace").splitlines()[-3:],
                                   fix="see `labctl doctor`")
                c.put_archive("/sync", chunks)

    def volume_tar(self, image: str, volume: str) -> Iterator[bytes]:
        """The volume's files as a tar stream (what --sync copies back)."""
        with translated(), self._volume_helper(image, volume) as c:
            stream, _ = c.get_archive("/sync")
            yield from stream

    def remove_volume(self, volume: str) -> None:
        with translated(), _ignore_missing():
            self.client.volumes.get(volume).remove(force=True)

    @contextmanager
    def _volume_helper(self, image: str, volume: str, command: list[str] | None = None
                       ) -> Iterator[Any]:
        """A container with ``volume`` at /sync, for archives (and ``command``, as root
        with no capability but CHOWN, when started)."""
        command = command or ["true"]
        with self._throwaway("sync") as name:
            yield self._create(
                image, command[1:], throwaway="sync", entrypoint=command[:1], name=name,
                user="0:0", network_disabled=True, cap_drop=["ALL"], cap_add=["CHOWN"],
                mounts=[docker.types.Mount("/sync", volume, type="volume")])

    # --- the hub's network (labctl hub) --------------------------------------------------
    def bridge_network(self, name: str, label: dict[str, str]) -> str:
        """The IPv4 gateway of the bridge network ``name``, made first when missing: the
        host's address on it, where a process on the host listens for its containers. Its
        containers reach the host and the internet, never one another (no inter-container
        traffic)."""
        with translated():
            found = [n for n in self.api.networks(names=[name]) if n.get("Name") == name]
            if not found:
                self.api.create_network(name, driver="bridge", labels=label, options={
                    "com.docker.network.bridge.enable_icc": "false"})
            info = self.api.inspect_network(name)
        for cfg in (info.get("IPAM") or {}).get("Config") or []:
            gateway = str(cfg.get("Gateway") or "")
            if gateway and ":" not in gateway:
                return gateway
        raise LabError(f"the Docker network {name} has no IPv4 gateway",
                       id="engine.no-ipv4-gateway",
                       fix=f"remove it (`docker network rm {name}`); labctl makes it again")

    def swarm_manager_address(self) -> str | None:
        """This engine's address in its swarm when it is an active manager (where a hub
        next to it listens for the servers of every node); None otherwise."""
        sw = self.info().get("Swarm") or {}
        if sw.get("LocalNodeState") == "active" and sw.get("ControlAvailable"):
            return str(sw.get("NodeAddr") or "") or None
        return None

    def services(self, with_labels: list[str]) -> list[dict[str, Any]]:
        """Swarm services carrying every label of ``with_labels``; none outside a swarm."""
        if self.swarm_manager_address() is None:
            return []
        with translated():
            return self.api.services(filters={"label": with_labels})

    def remove_service(self, service_id: str) -> None:
        with translated(), _ignore_missing():
            self.api.remove_service(service_id)

    def remove_network(self, name: str) -> None:
        with translated(), _ignore_missing():
            self.api.remove_network(name)

    def attach_cli(self, container: Any) -> int:
        """Start an interactive (TTY) container through the docker CLI, which handles the
        terminal; the SDK has no interactive TTY attach."""
        return _docker_cli(["start", "--attach", "--interactive", container.id])

    def exec_cli(self, container: Any, command: list[str], user: str, workdir: str,
                 env: dict[str, str]) -> int:
        args = ["exec", "-it", "--user", user, "--workdir", workdir]
        for k, val in env.items():
            args += ["--env", f"{k}={val}"]
        return _docker_cli(args + [container.id, *command])


def _ssh_client(address: str, timeout: int) -> docker.DockerClient:
    """A client of ssh://[user@]host[:port] through the system ssh. docker-py writes the
    address as host:22 and passes `-p 22`, which beats the Port of ~/.ssh/config (the
    docker CLI passes no port unless the address names one): the client is made with a
    fixed API version (made, it would already have dialled), given the address as it was
    written, and then asks the engine its version."""
    client = docker.DockerClient(base_url=address, version="1.24", timeout=timeout,
                                 use_ssh_client=True)
    adapter = getattr(client.api, "_custom_adapter", None)
    if adapter is not None and hasattr(adapter, "ssh_host"):
        adapter.ssh_host = address.removeprefix("ssh://").rstrip("/")
    client.api._version = client.api._retrieve_server_version()
    return client


def _docker_cli(args: list[str]) -> int:
    if not shutil.which("docker"):
        raise LabError("an interactive terminal needs the docker command-line client",
                       id="engine.no-docker-cli",
                       fix="sudo apt-get install docker.io (or docker-ce-cli)")
    return subprocess.call(["docker", *args])


@contextmanager
def _ignore_missing() -> Iterator[None]:
    with suppress(docker.errors.NotFound):
        yield
