"""`labctl build` on the real engine: build, no-op rebuild, layer reuse, failures."""

from __future__ import annotations

import time

import pytest
from conftest import BASE, TAG_PREFIX, labctl, make_wheel

from labctl.config.lab import load_lab
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.image.build import build
from labctl.image.render import render
from labctl.labels import HASH as LABEL_HASH
from labctl.labels import SPEC as LABEL_SPEC

pytestmark = pytest.mark.engine

SMALL = f"""\
description: a small lab for the tests
base: {BASE}
apt: [less]
pip: ["six==1.16.0"]
extras: ["idna==3.7"]
"""


@pytest.fixture(params=["classic", "buildkit"])
def builder(request) -> str:
    """Both build backends: the docker SDK's classic builder and BuildKit (the CLI)."""
    from labctl.image.buildkit import find_cli

    if request.param == "buildkit" and find_cli() is None:
        pytest.skip("no docker CLI here runs BuildKit builds")
    return request.param


def _build(root, name, **kw):
    lab = load_lab(str(root))
    ctx = render(lab, lab.spec(name))
    return lab, ctx, build(Engine.connect(), lab, ctx, lab.image_tag(name), **kw)


def _steps_before_extras(ctx, backend: str) -> tuple[list[int], int]:
    """The step numbers of the RUN/COPY steps before the extras layer, and the extras
    layer's first step, as the backend numbers steps."""
    from labctl.image.buildkit import steps_of
    from labctl.image.render import _instructions

    if backend == "classic":
        keys = ctx.step_keys()
        extras_step = keys.index("extras") + 1
        return [i + 1 for i in range(1, extras_step - 1)], extras_step
    text = ctx.buildkit_dockerfile
    ops = steps_of([i for i in _instructions(text) if not i.startswith("#")],
                   ctx.step_keys(text))
    extras_step = next(n for n, (_, k) in enumerate(ops, 1) if k == "extras")
    return list(range(2, extras_step)), extras_step


def test_build_run_noop_and_layer_reuse(docker_client, lab_factory, builder):
    root = lab_factory({"small": SMALL}, settings=f"builder: {builder}\n")
    proc = labctl("build", "small", "--progress", "plain", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "step" in proc.stdout and "built " in proc.stdout
    tag = f"{TAG_PREFIX}small:latest"

    # The image works: the spec's packages import, as the lab user, and carries labels.
    out = docker_client.containers.run(
        tag, ["python", "-c", "import six, idna; print(six.__version__, idna.__version__)"],
        remove=True,
    ).decode()
    assert "1.16.0 3.7" in out
    img = docker_client.images.get(tag)
    assert img.labels[LABEL_SPEC] == "small" and img.labels[LABEL_HASH]
    listed = labctl("list", "--json", cwd=root, check=True).stdout
    assert '"state": "current"' in listed

    # A rebuild of a current image does nothing, and says so, quickly.
    t0 = time.monotonic()
    again = labctl("build", "small", cwd=root, check=True)
    took = time.monotonic() - t0
    assert "nothing to build" in again.stdout
    assert docker_client.images.get(tag).id == img.id
    print(f"no-op build took {took:.2f}s")

    # Changing only the extras reuses every earlier layer from the cache.
    # A marker unique to this run: the engine's build cache outlives test runs, and the
    # extras layer must really be new here.
    unique = f"idna==3.6; platform_system != 'labctl-{TAG_PREFIX.strip('/')}'"
    (root / "images" / "small.yaml").write_text(SMALL.replace('"idna==3.7"', f'"{unique}"'))
    assert '"state": "outdated"' in labctl("list", "--json", cwd=root, check=True).stdout
    lab, ctx, res = _build(root, "small")
    assert res.status == "built" and res.backend == builder
    # every RUN/COPY step before the extras layer came from the cache
    expected, extras_step = _steps_before_extras(ctx, builder)
    assert set(expected) <= set(res.cached), (expected, res.cached)
    assert extras_step not in res.cached


def test_failed_build_keeps_previous_image(docker_client, lab_factory, builder):
    root = lab_factory({"small": SMALL}, settings=f"builder: {builder}\n")
    _, _, first = _build(root, "small")
    tag = first.tag
    bad = SMALL.replace('"six==1.16.0"', '"six==1.16.0", "labctl-no-such-package-xyz==1.0"')
    (root / "images" / "small.yaml").write_text(bad)
    proc = labctl("build", "small", "--progress", "plain", cwd=root)
    assert proc.returncode == 1
    err = proc.stderr
    assert "images/small.yaml" in err and "(pip)" in err  # the spec line it came from
    assert "labctl-no-such-package-xyz" in err
    assert "Traceback" not in err
    assert docker_client.images.get(tag).id == first.image_id


def test_dependency_conflict_names_both_packages(docker_client, lab_factory, builder):
    spec = SMALL.replace('["six==1.16.0"]', '["requests==2.32.3"]').replace(
        "idna==3.7", "idna==2.4")
    root = lab_factory({"conflict": spec}, settings=f"builder: {builder}\n")
    with pytest.raises(LabError) as info:
        _build(root, "conflict")
    text = str(info.value)
    assert "requests" in text and "idna" in text
    assert "relax one pin" in text


def test_missing_base_image_says_bootstrap(docker_client, lab_factory):
    root = lab_factory({"nobase": SMALL.replace(BASE, "labctl-test/no-such-base:1")})
    proc = labctl("build", "nobase", "--no-pull", cwd=root)
    assert proc.returncode == 1
    assert "labctl base bootstrap labctl-test/no-such-base:1" in proc.stderr


def test_ctrl_c_stops_build_and_leaves_no_container(docker_client, lab_factory, builder):
    import signal
    import subprocess
    import sys

    root = lab_factory({"slowapt": SMALL.replace("apt: [less]", "apt: [less, git]")},
                       settings=f"builder: {builder}\n")
    before = {c.id for c in docker_client.containers.list(all=True)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", "build", "slowapt", "--no-cache", "--progress",
         "plain"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout
    for line in proc.stdout:  # wait until a RUN step's container is busy
        if "[apt] RUN" in line or "Unpacking" in line:
            break
    running = [c for c in docker_client.containers.list() if c.id not in before]
    if builder == "classic":  # BuildKit runs its steps without engine containers
        assert running, "expected the builder's container to be running"
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, rest
    time.sleep(1)
    left = [c for c in docker_client.containers.list(all=True) if c.id not in before]
    assert left == [], [c.attrs["Config"]["Cmd"] for c in left]
    assert docker_client.images.list(name=f"{TAG_PREFIX}slowapt") == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(root) not in ps  # no docker CLI left building the lab's context


def test_wheelhouse_is_served_to_the_build_and_kept_out_of_the_image(docker_client,
                                                                     lab_factory, builder):
    spec = f"base: {BASE}\npip: [labctl-wheelhouse-probe]\n"
    root = lab_factory({"wh": spec}, settings=f"wheelhouse: wheels\nbuilder: {builder}\n")
    wheels = root / "wheels"
    wheels.mkdir(mode=0o700)  # readable by its owner only: served as the host user
    make_wheel(wheels, "labctl_wheelhouse_probe", "1.0")
    before = {c.id for c in docker_client.containers.list(all=True)}
    proc = labctl("build", "wh", "--progress", "plain", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = f"{TAG_PREFIX}wh:latest"
    # Installed from the wheelhouse (no index has it), and no wheel is in the image.
    out = docker_client.containers.run(
        tag, ["bash", "-c", "python -c 'import labctl_wheelhouse_probe as p; print(p.VERSION)';"
              " find / -xdev -name '*.whl' -path '*labctl*' | wc -l"], remove=True).decode()
    assert out.split() == ["1.0", "0"], out
    # The server container is gone once the build is done.
    assert {c.id for c in docker_client.containers.list(all=True)} - before == set()
    # A new wheel in the wheelhouse outdates the image; the next build installs it.
    make_wheel(wheels, "labctl_wheelhouse_probe", "1.1")
    assert '"state": "outdated"' in labctl("list", "--json", cwd=root, check=True).stdout
    labctl("build", "wh", cwd=root, check=True)
    out = docker_client.containers.run(
        tag, ["python", "-c", "import labctl_wheelhouse_probe as p; print(p.VERSION)"],
        remove=True).decode()
    assert out.strip() == "1.1"


def test_build_json_is_one_result_per_spec(docker_client, lab_factory):
    import json

    root = lab_factory({"small": SMALL})
    proc = labctl("build", "small", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    (res,) = json.loads(proc.stdout)  # progress went to stderr
    assert res["spec"] == "small" and res["tag"] == f"{TAG_PREFIX}small:latest"
    assert res["image_id"] == docker_client.images.get(res["tag"]).id
    assert {"seconds", "steps", "cached_steps", "size", "status"} <= set(res)
    again = json.loads(labctl("build", "small", "--json", cwd=root, check=True).stdout)
    assert again[0]["status"] == "current" and again[0]["image_id"] == res["image_id"]


def test_add_keeps_a_package_and_rebuilds_only_its_layer(docker_client, lab_factory):
    import json

    root = lab_factory({"small": "# a small lab\n" + SMALL})
    labctl("build", "small", cwd=root, check=True)
    proc = labctl("add", "small", "tomli-w==1.0.0", "--json", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["extras"] == ["idna==3.7", "tomli-w==1.0.0"]
    text = (root / "images" / "small.yaml").read_text()
    assert text.startswith("# a small lab\n") and "tomli-w==1.0.0" in text
    build = out["build"]
    assert build["steps"] - build["cached_steps"] <= 9, build  # the extras layer and after
    got = docker_client.containers.run(f"{TAG_PREFIX}small:latest", ["python", "-c",
                                       "import tomli_w, idna; print('ok')"], remove=True)
    assert got.decode().strip() == "ok"


def test_a_buildkit_rebuild_sends_only_what_changed(docker_client, lab_factory):
    """The BuildKit context folder is kept between builds (lab/.labctl/build/SPEC), so a
    rebuild after a package change sends the changed files, not the wheelhouse again."""
    import json
    import os

    from labctl.image.buildkit import find_cli

    if find_cli() is None:
        pytest.skip("no docker CLI here runs BuildKit builds")
    spec = f"base: {BASE}\npip: [labctl-wheelhouse-probe]\nextras: []\n"
    root = lab_factory({"kept": spec}, settings="wheelhouse: wheels\nbuilder: buildkit\n")
    wheels = root / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "labctl_wheelhouse_probe", "1.0")
    (wheels / "labctl_pad-1.0-py3-none-any.whl").write_bytes(os.urandom(8 << 20))

    def sent(*args: str) -> int:
        out = labctl("build", "kept", "--json", *args, cwd=root, check=True).stdout
        [res] = json.loads(out)
        assert res["status"] == "built" and res["backend"] == "buildkit", res
        return res["context_bytes"]

    assert sent() >= 8 << 20
    (root / "images" / "kept.yaml").write_text(spec.replace("extras: []", "extras: [idna]"))
    assert sent() < 100_000  # the spec's changed files, not the 8 MB wheel again
    # a wheel taken out of the wheelhouse leaves the context too
    (wheels / "labctl_pad-1.0-py3-none-any.whl").unlink()
    sent("--force")
    folder = root / ".labctl" / "build" / "kept"
    assert sorted(p.name for p in (folder / "wheelhouse").iterdir()) == [
        "labctl_wheelhouse_probe-1.0-py3-none-any.whl"]
