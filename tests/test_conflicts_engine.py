"""The ways out of a dependency conflict, on the real engine, against a package index the test
serves itself (offline: every package of the specs is on it).

The crafted packages have the shape of the reported gradio / google-genai case:
cfa 1.x pins cfc<13 through cfb, cfd needs cfc>=13, and a newer cfa (2.0) allows cfc 13.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE, TAG_PREFIX, labctl, write_lab

from labctl import labels

pytestmark = pytest.mark.engine

# name, version, Requires-Dist lines
PACKAGES = [
    ("cfa", "1.0", ["cfb<2"]),
    ("cfa", "1.1", ["cfb<2"]),
    ("cfa", "2.0", ["cfb>=2"]),
    ("cfa", "2.1", ["cfb>=2"]),
    ("cfb", "1.0", ["cfc<13"]),
    ("cfb", "2.0", ["cfc>=12,<15"]),
    ("cfc", "12.0", []),
    ("cfc", "13.0", []),
    ("cfd", "1.0", ["cfc>=13"]),
]


def wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal pure-Python wheel (as conftest.make_wheel) whose METADATA lists
    ``requires`` as Requires-Dist lines."""
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": meta,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    out = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


def static_index(root: Path) -> Path:
    """A PEP 503 simple index as plain files (root/simple/NAME/index.html), which
    `python3 -m http.server` serves as it is."""
    files = root / "files"
    files.mkdir(parents=True)
    links: dict[str, list[str]] = {}
    for name, version, requires in PACKAGES:
        w = wheel(files, name, version, requires)
        sha = hashlib.sha256(w.read_bytes()).hexdigest()
        links.setdefault(name, []).append(f'<a href="../../files/{w.name}#sha256={sha}">'
                                          f"{w.name}</a>")
    for name, anchors in links.items():
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text("<html><body>" + "\n".join(anchors) + "</body></html>\n")
    for p in [root, *root.rglob("*")]:  # readable by the server's user in its container
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def index(docker_client, tmp_path_factory) -> Iterator[str]:
    """The URL of the crafted index, served from a container on the engine's bridge (where
    the builds and the resolver reach it)."""
    import docker.types

    root = write_lab(tmp_path_factory.mktemp("cfsrv") / "lab",
                     {"srv": f"base: {BASE}\ndescription: serves the test index\n"})
    labctl("build", "srv", cwd=root, check=True)
    folder = static_index(tmp_path_factory.mktemp("cfindex") / "index")
    server = docker_client.containers.run(
        f"{TAG_PREFIX}srv:latest", ["python3", "-m", "http.server", "8080", "--directory",
                                    "/srv/index"],
        entrypoint=[], detach=True, labels={f"{labels.PREFIX}test": "1"},
        mounts=[docker.types.Mount("/srv/index", str(folder), type="bind", read_only=True)])
    try:
        deadline = time.monotonic() + 30
        while b"Serving HTTP" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        server.reload()
        yield f"http://{server.attrs['NetworkSettings']['IPAddress']}:8080/simple"
    finally:
        server.remove(force=True)


def spec(index_url: str, pip: list[str], extra: str = "") -> str:
    return (f"base: {BASE}\n# the course's packages\npip:\n"
            + "".join(f"  - {p}  # kept comment\n" for p in pip)
            + f"extra_index_urls: ['{index_url}']\n{extra}")


def _run(docker_client, tag: str, code: str) -> str:
    return docker_client.containers.run(tag, ["python", "-c", code], entrypoint=[],
                                        remove=True).decode().strip()


def test_lock_names_the_way_out_with_versions(index, lab_factory) -> None:
    root = lab_factory({"cf": spec(index, ["cfa<2", "cfd"])})
    proc = labctl("lock", "cf", cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = proc.stderr
    # The conflict once, in the learner's terms: their two requirements, through cfc.
    assert "cfa<2 and cfd cannot be installed together: they need different versions of" \
           " cfc" in err
    assert "all versions of cfd depend on cfc>=13" in err
    assert err.count("No solution found") == 0  # uv's text is not printed (twice) again
    ways = [ln.strip() for ln in err.splitlines() if ln.strip()[:3] in ("1. ", "2. ", "3. ")]
    assert ways[0].startswith("1. relax cfa<2 to cfa>=2.0: `cfa>=2.0` instead of `cfa<2`"), err
    assert "cfa 1.1 -> 2.1" in ways[0]
    assert any("drop cfd" in w for w in ways[1:]), err  # ranked below relaxing cfa
    assert "not a way out: any version of cfd" in err
    assert "labctl add cf --resolve" in err
    assert not (root / "images" / "cf.lock").exists()
    # --json: the same advice for scripts
    data = json.loads(labctl("lock", "cf", "--json", cwd=root).stdout)
    first = data["advice"]["ways_out"][0]
    assert first["edits"] == [{"old": "cfa<2", "new": "cfa>=2.0"}]
    assert first["versions"] == {"cfa": "2.1"} and first["before"] == {"cfa": "1.1"}
    assert data["advice"]["conflict"]["through"] == "cfc"
    assert 0 < data["advice"]["resolutions"] <= 24 and data["advice"]["stopped_early"] is None


def test_build_of_a_conflicting_spec_shows_the_ways_out(index, lab_factory) -> None:
    root = lab_factory({"cfb": spec(index, ["cfa<2", "cfd"])})  # no lock: pip fails in the build
    proc = labctl("build", "cfb", "--progress", "plain", cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cfa<2 and cfd cannot be installed together" in proc.stderr, proc.stderr[-3000:]
    assert "1. relax cfa<2 to cfa>=2.0" in proc.stderr


def test_add_resolve_applies_the_way_out_and_builds(docker_client, index, lab_factory
                                                    ) -> None:
    root = lab_factory({"cf": spec(index, ["cfa<2"])})
    path = root / "images" / "cf.yaml"
    before = path.read_text()
    labctl("lock", "cf", cwd=root, check=True)
    # Without --resolve: the ways out, and the spec as it was.
    plain = labctl("add", "cf", "cfd", "--no-build", "--json", cwd=root)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert path.read_text() == before
    assert "labctl add cf cfd --resolve" in plain.stderr
    advice = json.loads(plain.stdout)["advice"]
    assert advice["ways_out"][0]["title"] == "relax cfa<2 to cfa>=2.0"
    # --resolve: way 1 written (comments kept), locked, built.
    proc = labctl("add", "cf", "cfd", "--resolve", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = path.read_text()
    assert "  - cfa>=2.0  # kept comment\n" in text and "# the course's packages" in text
    assert "extras:\n  - cfd\n" in text
    result = json.loads(proc.stdout)
    assert result["resolved"]["way"] == 1 and result["build"]
    lock = (root / "images" / "cf.lock").read_text()
    assert "cfa==2.1" in lock and "cfc==13.0" in lock and "cfd==1.0" in lock
    assert _run(docker_client, f"{TAG_PREFIX}cf:latest",
                "import cfa, cfc, cfd; print(cfa.VERSION, cfc.VERSION)") == "2.1 13.0"
    # why: from the lock alone
    why = labctl("why", "cf", "cfc", cwd=root, check=True).stdout
    assert "cfc 13.0 in images/cf.lock" in why
    assert "cfd: cfd 1.0 -> cfc 13.0" in why
    assert "cfa>=2.0: cfa 2.1 -> cfb 2.0 -> cfc 13.0" in why
    assert "constrained by: cfb 2.0, cfd 1.0" in why
    data = json.loads(labctl("why", "cf", "cfc", "--json", cwd=root, check=True).stdout)
    assert sorted(data["brought_in_by"]) == ["cfa>=2.0", "cfd"] and not data["stale"]
    missing = labctl("why", "cf", "numpy", cwd=root)
    assert missing.returncode == 1 and "numpy is not in images/cf.lock" in missing.stderr


@pytest.mark.slow
def test_the_reported_gradio_case(docker_client, lab_factory) -> None:
    """The real case against the real index: the advice resolves it and the lab then
    imports both."""
    root = lab_factory({"gr": f"base: {BASE}\npip:\n  - gradio>=4.40,<4.45  # the course\n"
                              "  - google-genai\n"})
    proc = labctl("lock", "gr", "--json", cwd=root)
    assert proc.returncode == 1
    advice = json.loads(proc.stdout)["advice"]
    assert advice["conflict"]["through"] == "websockets"
    assert advice["ways_out"], proc.stderr
    done = labctl("add", "gr", "--resolve", "--json", cwd=root, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _run(docker_client, f"{TAG_PREFIX}gr:latest",
                "import gradio, google.genai; print('ok')").endswith("ok")
