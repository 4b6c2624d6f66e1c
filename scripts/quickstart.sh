#!/usr/bin/env bash
# The main job in one command: set up Docker, labctl and a base image, create a lab
# folder, build the lab image and start it as you. Usage: quickstart.sh [SPEC] [LABDIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

spec="${1:-d2l}"
labdir="${2:-$REPO/mylab}"

ensure_engine
ensure_venv
ensure_base debian:bookworm

export PATH="$VENV/bin:$PATH"
[ -d "$labdir" ] || labctl init "$labdir"
cd "$labdir"
labctl build "$spec"
exec labctl run "$spec" --user
