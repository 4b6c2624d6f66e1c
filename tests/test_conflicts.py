"""The ways out of a dependency conflict, without an engine: uv's explanation read, the
variants the search resolves, the ranking, the spec rewritten in place, `labctl why`, and
the in-container search script (with a stand-in `uv`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.config import yamlfile
from labctl.config.lockfile import parse_lock
from labctl.errors import LabError
from labctl.lock import conflicts as cf

# What uv 0.13 printed for the crafted index of test_conflicts_engine.py.
UV = """\
error: No solution found when resolving dependencies
  cause: Because all versions of cfd depend on cfc>=13 and cfb<=1.0 depends on cfc<13, we can conclude that cfb<=1.0 and all versions of cfd are incompatible.
         And because cfa<=1.1 depends on cfb<2, we can conclude that cfa<=1.1 and all versions of cfd are incompatible.
         And because you require cfa<2 and cfd, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501

# The reported case, as uv 0.13.9 printed it against PyPI (December 2026).
GRADIO = """\
error: No solution found when resolving dependencies
  cause: Because gradio>=4.41.0,<=4.44.1 depends on gradio-client==1.3.0 and gradio==4.40.0 depends on gradio-client==1.2.0, we can conclude that gradio>=4.40.0,<=4.44.1 depends on gradio-client>=1.2.0,<=1.3.0.
         And because gradio-client>=1.2.0,<=1.3.0 depends on websockets>=10.0,<13.0, we can conclude that gradio>=4.40.0,<=4.44.1 depends on websockets>=10.0,<13.0. (1)

         Because google-genai>=0.7.0,<=1.5.0 depends on websockets>=13.0,<15.0.dev0 and google-genai>=1.65.0,<=2.32.0 depends on websockets>=13.0.0,<17.0, we can conclude that all of:
             google-genai>=0.7.0,<=1.5.0
             google-genai>=1.65.0,<=2.32.0
         depend on websockets>=13.0,<17.0.
         And because google-genai<=0.6.0 was yanked (reason: Pillow vulnerability issues CVE-2026-54058 etc) and google-genai==1.6.0 was yanked, we can conclude that all of:
             google-genai<=1.6.0
             google-genai>=1.65.0,<=2.32.0
         depend on websockets>=13.0,<17.0.
         And because all of:
             google-genai>=1.7.0,<=1.11.0
             google-genai>=1.12.1,<=1.15.0
             google-genai>=1.16.1,<=1.64.0
         depend on websockets>=13.0.0,<15.1.0 and all of:
             google-genai==1.12.0
             google-genai==1.16.0
          were yanked, we can conclude that all of:
             google-genai==1.12.0
             google-genai==1.16.0
         depend on websockets>=13.0,<17.0.
         And because we know from (1) that gradio>=4.40.0,<=4.44.1 depends on websockets>=10.0,<13.0, we can conclude that google-genai<=2.32.0 and gradio>=4.40.0,<=4.44.1 are incompatible. (2)

         Because gradio>=4.41.0,<=4.44.1 depends on gradio-client==1.3.0 and gradio==4.40.0 depends on gradio-client==1.2.0, we can conclude that gradio>=4.40.0,<=4.44.1 depends on gradio-client>=1.2.0,<=1.3.0.
         And because gradio-client>=1.2.0,<=1.3.0 depends on websockets>=10.0,<13.0 and google-genai>=2.33.0 depends on websockets>=13.0.0, we can conclude that google-genai>=2.33.0 and gradio>=4.40.0,<=4.44.1 are incompatible.
         And because we know from (2) that google-genai<=2.32.0 and gradio>=4.40.0,<=4.44.1 are incompatible, we can conclude that all versions of google-genai and gradio>=4.40.0,<=4.44.1 are incompatible.
         And because you require gradio>=4.40,<4.45 and google-genai, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501

REQS = ["cfa<2", "cfd"]


def test_the_conflict_in_the_learners_terms() -> None:
    c = cf.parse_conflict(UV, REQS)
    assert c.involved == ("cfa<2", "cfd") and c.named
    assert c.through == "cfc"
    assert c.reasons == ("all versions of cfd depend on cfc>=13", "cfb<=1.0 depends on cfc<13")
    assert c.headline() == "cfa<2 and cfd cannot be installed together: they need different" \
                           " versions of cfc"
    g = cf.parse_conflict(GRADIO, ["gradio>=4.40,<4.45", "google-genai", "numpy"])
    assert g.involved == ("gradio>=4.40,<4.45", "google-genai")
    assert g.through == "websockets"
    assert g.reasons[:2] == ("gradio>=4.40.0,<=4.44.1 depends on websockets>=10.0,<13.0",
                             "google-genai>=2.33.0 depends on websockets>=13.0.0")
    # a build's error keeps the last lines of its output only: enough
    tail = "\n".join(f"#9 12.3 {ln}" for ln in GRADIO.splitlines()[-12:])
    assert cf.is_conflict(tail)
    assert cf.parse_conflict(tail, ["gradio>=4.40,<4.45", "google-genai"]).through \
        == "websockets"


def test_a_bare_unsatisfiable_line_is_read_without_a_crash() -> None:
    """A build's tail can keep uv's last words without its reasoning lines."""
    assert cf.explanation("#9 1.2 the requirements are unsatisfiable") == [
        "the requirements are unsatisfiable"]
    assert cf.explanation("Unsatisfiable\n") == ["Unsatisfiable"]
    assert cf.explanation("nothing of the kind") == []


def test_without_names_every_requirement_is_tried() -> None:
    # no "you require": the requirements it mentions
    mentioned = cf.parse_conflict("error: No solution found\n  cause: cfd depends on cfc>=13"
                                  " and cfa==1.0 depends on cfc<13.", REQS + ["six"])
    assert mentioned.involved == ("cfa<2", "cfd")
    nothing = cf.parse_conflict("error: No solution found\n  cause: something else",
                                REQS + ["six"], movable=["cfd", "six"])
    assert nothing.involved == ("cfd", "six") and not nothing.named
    assert cf.is_conflict(UV) and not cf.is_conflict("error: no matching distribution")


def test_the_variants_most_useful_first() -> None:
    vs = cf.variants(["torch==2.5.1", "cfa<2", "cfd"], ["cfa<2", "cfd"])
    kinds = [(v.kind, v.target) for v in vs]
    assert kinds == [("relax", ("cfa<2",)), ("relax", ("cfd",)), ("drop", ("cfa<2",)),
                     ("drop", ("cfd",)), ("alone", ("cfa<2",)), ("alone", ("cfd",)),
                     ("low", ("cfa<2",)), ("relax-all", ("cfa<2", "cfd"))]
    assert vs[0].requirements == ("torch==2.5.1", "cfa", "cfd")  # the rest as it is
    assert vs[2].requirements == ("torch==2.5.1", "cfd")
    low = vs[6]
    assert low.requirements == ("torch==2.5.1", "cfa>=2", "cfd")
    assert (low.resolution, low.pin_from, low.pin) == ("lowest-direct", "relax0",
                                                        ("torch", "cfd"))
    assert cf.upper_bound(cf.SpecifierSet(">=4.40,<4.45")) == ">=4.45"
    assert cf.upper_bound(cf.SpecifierSet("==1.2")) == ">1.2"
    assert cf.upper_bound(cf.SpecifierSet(">=13")) is None
    # markers and extras stay on a relaxed line
    assert cf.variants(["a[x]<2; python_version>'3'", "b"], ["a[x]<2; python_version>'3'"]
                       )[0].requirements[0] == 'a[x]; python_version > "3"'


def _results(**rows: dict) -> dict:
    return {k: {"id": k, "ok": v is not None, "versions": v or {}} for k, v in rows.items()}


def test_relaxing_a_ranks_above_dropping_d() -> None:
    vs = cf.variants(REQS, ["cfa<2", "cfd"])
    res = _results(relax0={"cfa": "2.1", "cfb": "2.0", "cfc": "13.0", "cfd": "1.0"},
                   relax1=None,  # no cfd fits cfa<2
                   drop0={"cfd": "1.0", "cfc": "13.0"},
                   drop1={"cfa": "1.1", "cfb": "1.0", "cfc": "12.0"},
                   alone0={"cfa": "1.1", "cfb": "1.0", "cfc": "12.0"},
                   alone1={"cfd": "1.0", "cfc": "13.0"},
                   low0={"cfa": "2.0", "cfb": "2.0", "cfc": "13.0", "cfd": "1.0"},
                   **{"relax-all": {"cfa": "2.1", "cfd": "1.0"}})
    ways = cf.ways_out(vs, res)
    # relax-all moves cfd nowhere (1.0 is in its range): not a way of its own
    assert [w.title() for w in ways] == ["relax cfa<2 to cfa>=2.0", "drop cfa<2", "drop cfd"]
    first = ways[0]
    assert first.edits == (("cfa<2", "cfa>=2.0"),)
    assert first.before == {"cfa": "1.1"} and first.versions == {"cfa": "2.1"}
    assert first.least == {"cfa": "2.0"} and first.jump == (1, 0, 0)
    assert first.detail() == "cfa 1.1 -> 2.1, 2.0 the least that fits"
    advice = cf.Advice("cf", "images/cf.yaml", cf.parse_conflict(UV, REQS), ways,
                       cf.tried(vs, res), 8, 3.2)
    text = "\n".join(advice.lines())
    assert "1. relax cfa<2 to cfa>=2.0: `cfa>=2.0` instead of `cfa<2`" in text
    assert "remove `cfd`" in text and "not a way out: any version of cfd" in text
    assert "searched with 8 resolutions in 3s" in text and "stopped early" not in text
    err = cf.ConflictError(advice)
    assert "labctl add cf --resolve" in (err.fix or "")
    assert json.loads(json.dumps(advice.as_dict()))["ways_out"][0]["edits"] == [
        {"old": "cfa<2", "new": "cfa>=2.0"}]


def test_lines_a_way_out_writes() -> None:
    r = cf.Requirement
    assert cf._relaxed_line(r("gradio>=4.40,<4.45"), "5.0.0") == "gradio>=5.0.0"
    assert cf._relaxed_line(r("websockets>=13"), "12.0") == "websockets<=12.0"
    assert cf._relaxed_line(r("cfa==1.0"), "2.0") == "cfa==2.0"
    assert cf._relaxed_line(r("cfa<2"), "1.5") is None  # in range: not a move
    assert cf.jump("4.44.1", "5.0.0") == (1, 0, 0)
    assert cf.jump("1.2.3", "1.4.0") == (0, 2, 0) and cf.jump("1.0", "1.0.0") == (0, 0, 0)


SPEC = """\
base: debian:bookworm   # the base
# the course's packages
pip:
  - cfa<2   # course pin
  - cfd     # the new one
extras: [six, 'tqdm>=4']
"""


def _doc(tmp_path: Path, text: str) -> yamlfile.Document:
    path = tmp_path / "cf.yaml"
    path.write_bytes(text.encode())
    return yamlfile.read(path)


def test_the_spec_rewritten_in_place(tmp_path: Path) -> None:
    doc = _doc(tmp_path, SPEC)
    out = cf.rewrite(doc, SPEC, "cfa<2", "cfa>=2.0")
    assert out == SPEC.replace("  - cfa<2   # course pin", "  - cfa>=2.0   # course pin")
    gone = cf.rewrite(doc, SPEC, "cfd", None)
    assert gone == SPEC.replace("  - cfd     # the new one\n", "")
    flow = cf.rewrite(doc, SPEC, "tqdm>=4", None)
    assert flow.endswith("extras: [six]\n")
    flow2 = cf.rewrite(doc, SPEC, "six", "six<2")
    assert flow2.endswith("extras: [six<2, 'tqdm>=4']\n")
    crlf = SPEC.replace("\n", "\r\n")
    assert cf.rewrite(_doc(tmp_path, crlf), crlf, "cfd", None) == gone.replace("\n", "\r\n")
    way = cf.WayOut("relax", ("cfa<2",), (("cfa<2", "cfa>=2.0"),), {}, {})
    assert "cfa>=2.0   # course pin" in cf.apply(doc, SPEC, way)
    with pytest.raises(LabError) as e:  # from a parent spec, or not there at all
        cf.rewrite(doc, SPEC, "numpy<2", None)
    assert "by hand" in (e.value.fix or "")
    one = "pip:\n  - cfd  # only\n"
    assert yamlfile.parse(Path("x.yaml"), cf.rewrite(_doc(tmp_path, one), one, "cfd", None)
                          ).data == {"pip": []}


LOCK = """\
# labctl lock file
# labctl-lock: 1
# inputs: 0123
# torch-inputs: 4567
# python: 3.11.2 (x86_64, glibc 2.36)
# resolver: uv 0.13.9

# [pip] the spec's pip packages
cfa==2.1 \\
    --hash=sha256:aa
    # via images/cf.yaml (pip)
cfb==2.0 \\
    --hash=sha256:bb
    # via cfa
cfc==13.0 \\
    --hash=sha256:cc
    # via
    #   cfb
    #   cfd
cfd==1.0 \\
    --hash=sha256:dd
    # via images/cf.yaml (pip)
six==1.16.0
    # via images/cf.yaml (pip)
"""


def test_why_reads_the_lock() -> None:
    lock = parse_lock(LOCK, "images/cf.lock", "cf")
    found = cf.why(lock, ["cfa>=2.0", "cfd", "six"], "CFC")
    assert found is not None and found.version == "13.0"
    assert found.chains == [["cfd", "cfd 1.0", "cfc 13.0"],
                            ["cfa>=2.0", "cfa 2.1", "cfb 2.0", "cfc 13.0"]]
    assert found.requirers == ["cfb 2.0", "cfd 1.0"]
    direct = cf.why(lock, ["cfa>=2.0", "cfd", "six"], "cfa")
    assert direct is not None and direct.chains == [["cfa>=2.0", "cfa 2.1"]]
    assert direct.constrained_by == ["cfa>=2.0"]
    assert cf.why(lock, ["cfd"], "numpy") is None


def _script(tmp_path: Path, uv: str, job: dict) -> tuple[list[dict], dict]:
    """The in-container script, with a stand-in `uv` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "uv").write_text("#!/bin/sh\n" + uv)
    os.chmod(bin_dir / "uv", 0o755)
    (tmp_path / "job.json").write_text(json.dumps(job))
    script = Path(cf.__file__).parent.parent / "incontainer" / "tools" / "conflicts.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(ln) for ln in proc.stdout.splitlines()]
    return rows[:-1], rows[-1]


def test_the_search_script_stops_at_its_limits(tmp_path: Path) -> None:
    job = {"seconds": 60, "max": 2, "variants": [
        {"id": f"v{i}", "requirements": ["cfa"]} for i in range(4)]}
    uv = 'echo "Cfa_X==2.1"\necho "cfb==1.0 ; python_version>\'3\'"'
    rows, end = _script(tmp_path / "a", uv, job)
    assert [r["id"] for r in rows] == ["v0", "v1"] and rows[0]["ok"]
    assert rows[0]["versions"] == {"cfa-x": "2.1", "cfb": "1.0"}
    assert end == {"done": 2, "stopped": "after 2 resolutions (the limit)"}
    slow = {"seconds": 2, "max": 10, "variants": job["variants"]}
    rows, end = _script(tmp_path / "b", "sleep 5\n", slow)
    assert "time limit" in end["stopped"] and rows[-1].get("timeout")
    failing = {"seconds": 60, "max": 10, "variants": [
        {"id": "a", "requirements": ["x"]},
        {"id": "b", "requirements": ["x"], "pin_from": "a", "pin": ["x"]}]}
    rows, end = _script(tmp_path / "c", "echo 'No solution found' >&2\nexit 1\n", failing)
    assert rows == [{"id": "a", "ok": False, "versions": {}, "seconds": rows[0]["seconds"],
                     "error": ["No solution found"]}]  # b needs a's versions: not run
    assert end == {"done": 1, "stopped": ""}


def test_a_marker_stays_on_the_line_a_way_out_writes() -> None:
    req = 'cfa<2; python_version > "3"'
    vs = cf.variants([req, "cfd"], [req, "cfd"])
    res = _results(relax0={"cfa": "2.1", "cfd": "1.0"}, low0={"cfa": "2.0", "cfd": "1.0"})
    [way] = cf.ways_out(vs, res)
    assert way.edits == ((req, 'cfa>=2.0; python_version > "3"'),)
    # nothing it could move: no way out, and the advice says so
    advice = cf.Advice("cf", "images/cf.yaml", cf.parse_conflict(UV, REQS), [], [], 0, 0.0,
                       "after 0 resolutions, at the time limit")
    assert "no way out found" in advice.lines()[1]
    assert "stopped early after 0 resolutions, at the time limit" in advice.lines()[-1]
    assert "by hand" in (cf.ConflictError(advice).fix or "")
