"""`uv pip check`, except for the packages a spec installs with --no-deps on purpose
(their pins, e.g. d2l 0.17.6's numpy==1.21.5, are known not to install on this Python).
Exits 1 naming both sides of every other conflict."""

import re
import subprocess
import sys
from pathlib import Path

NODEPS = Path("/opt/labctl/requirements-nodeps.txt")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


lines_in = NODEPS.read_text().splitlines() if NODEPS.exists() else []
ignored = set()
for req in (line.strip() for line in lines_in):
    if m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req):
        ignored.add(norm(m[0]))
proc = subprocess.run(["uv", "pip", "check"], capture_output=True, text=True)
lines = (proc.stdout + proc.stderr).splitlines()
problems = []
for line in lines:
    m = re.match(r"\s*The package `([^`]+)` requires", line)
    conflict = m is not None and norm(m[1]) not in ignored
    failure = m is None and proc.returncode != 0 and line.strip().lower().startswith("error")
    if conflict or failure:
        problems.append(line.strip())
skipped = sum(1 for line in lines if "The package `" in line) - len(problems)
print("\n".join(lines))
if skipped:
    print(f"labctl: ignored {skipped} pins of --no-deps packages: {', '.join(sorted(ignored))}")
if problems:
    print("labctl: incompatible packages:\n" + "\n".join(problems))
    sys.exit(1)
