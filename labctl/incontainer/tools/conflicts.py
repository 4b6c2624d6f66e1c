"""Runs inside ONE throw-away container of the resolver image (the lab's first layers: its
base, Python and uv) for labctl's search of the ways out of a dependency conflict: many
`uv pip compile` runs, one per variant of the spec's requirements, sharing one uv cache
(what the first run downloads, the others reuse), under a deadline and a count.

Standard library only: it runs on the base image's own python3.

    python3 /in/conflicts.py /in/job.json

job.json: {"seconds": 120, "max": 24, "variants": [{"id", "requirements": [...],
"resolution": "highest" | "lowest-direct", "pin_from": ID, "pin": [NAME, ...]}]}.
"pin_from" holds the named packages at the versions variant ID resolved (constraints).
Prints one JSON object a line: a result per variant run, then {"done", "stopped"}.
Indexes come from the image's environment (UV_INDEX_URL, UV_EXTRA_INDEX_URL), as for
`labctl lock`; LABCTL_TORCH_INDEX and /wheelhouse are used as lock-resolve.sh does.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def versions(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = _PIN.match(line.strip())
        if m:
            out[canonical(m[1])] = m[2]
    return out


def main(job_file: str) -> int:
    with open(job_file, encoding="utf-8") as f:
        job = json.load(f)
    deadline = time.monotonic() + float(job.get("seconds", 120))
    limit = int(job.get("max", 24))
    env = dict(os.environ, UV_CACHE_DIR="/tmp/uv-cache")  # one cache for every run here
    env.pop("UV_NO_CACHE", None)
    extra = []
    if os.environ.get("LABCTL_TORCH_INDEX"):
        extra += ["--extra-index-url", os.environ["LABCTL_TORCH_INDEX"]]
    if os.path.isdir("/wheelhouse"):
        extra += ["--find-links", "/wheelhouse"]
    results = {}
    done, stopped = 0, ""
    work = tempfile.mkdtemp(prefix="labctl-conflicts-")
    for v in job["variants"]:
        left = deadline - time.monotonic()
        if done >= limit:
            stopped = f"after {done} resolutions (the limit)"
            break
        if left < 1:
            stopped = f"after {done} resolutions, at the time limit"
            break
        req_file = os.path.join(work, f"req-{done}.txt")
        with open(req_file, "w", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in v["requirements"]))
        cmd = ["uv", "pip", "compile", "--quiet", "--no-header", "--no-annotate", *extra,
               "--resolution", v.get("resolution", "highest"), req_file]
        if v.get("pin_from"):
            base = results.get(v["pin_from"])
            if not base or not base["ok"]:
                continue  # what it would hold still is unknown: nothing to try
            pins = [f"{n}=={base['versions'][n]}" for n in v.get("pin", [])
                    if n in base["versions"]]
            cons = os.path.join(work, f"cons-{done}.txt")
            with open(cons, "w", encoding="utf-8") as f:
                f.write("".join(p + "\n" for p in pins))
            cmd += ["-c", cons]
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env)
        except subprocess.TimeoutExpired:
            stopped = f"after {done} resolutions, at the time limit"
            print(json.dumps({"id": v["id"], "ok": False, "timeout": True,
                              "error": ["no answer before the time limit"]}), flush=True)
            break
        done += 1
        result = {"id": v["id"], "ok": p.returncode == 0, "versions": versions(p.stdout),
                  "seconds": round(time.monotonic() - start, 1),
                  "error": [ln for ln in p.stderr.splitlines() if ln.strip()][-12:]
                  if p.returncode else []}
        results[v["id"]] = result
        print(json.dumps(result), flush=True)
    print(json.dumps({"done": done, "stopped": stopped}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
