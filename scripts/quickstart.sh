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
lab_steps="[ -d '$labdir' ] || labctl init '$labdir'; cd '$labdir' && labctl build '$spec' && exec labctl run '$spec' --user"
if is_root && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # Set-up needed root; the lab is yours: its folders and files must not be root's.
    usermod -aG docker "$SUDO_USER"
    chgrp docker /var/run/docker.sock && chmod g+rw /var/run/docker.sock
    say "running the lab as $SUDO_USER"
    exec runuser -u "$SUDO_USER" -- env PATH="$PATH" bash -c "$lab_steps"
fi
exec bash -c "$lab_steps"
