#!/usr/bin/env bash
# Shared set-up for quickstart.sh and test.sh, sourced by both:
#   ensure_engine   a Docker engine answers (as root: installs docker.io, starts dockerd)
#   ensure_venv     .venv holds labctl (with test extras when asked)
#   ensure_base     the base image exists (labctl base bootstrap from a Debian mirror)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LABCTL_VENV:-$REPO/.venv}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
# Under sudo in a learner's checkout, Python run as root (labctl base, the root tests)
# would leave root's __pycache__ folders there.
if is_root && [ "$(stat -c %u "$REPO")" != 0 ]; then
    export PYTHONDONTWRITEBYTECODE=1
fi

apt_install() {
    is_root || die "missing $*; install it with: sudo apt-get install $*"
    say "installing $* (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

ensure_engine() {
    engine_answers && return 0
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        apt_install docker.io
    fi
    engine_answers && return 0
    is_root || die "no Docker engine answers. Start it with 'sudo systemctl start docker' (or 'sudo dockerd &'), and make sure you are in the docker group: sudo usermod -aG docker \$USER, then log in again"
    say "starting dockerd"
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
        systemctl start docker || true
    fi
    if ! engine_answers; then
        nohup dockerd >/var/log/labctl-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        engine_answers && return 0
        sleep 1
    done
    tail -20 /var/log/labctl-dockerd.log >&2 || true
    die "dockerd did not come up within 60 s (log: /var/log/labctl-dockerd.log)"
}

ensure_venv() {
    local extras="${1:-}"
    local py="${LABCTL_PYTHON:-python3}"
    if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv python3-pip
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$py" -m venv "$VENV"
    fi
    local want="$REPO"
    [ -n "$extras" ] && want="$REPO[$extras]"
    say "installing labctl into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$want"
    hand_back
}

# Under sudo the set-up runs as root: what it made in a learner's checkout (the venv, its
# node tools, pip's egg-info) goes back to the checkout's owner, or `pip install` there
# and `rm -r` of the clone would need sudo.
hand_back() {
    local owner
    owner="$(stat -c %u:%g "$REPO")"
    if is_root && [ "${owner%%:*}" != 0 ]; then
        chown -R -h "$owner" "$VENV"
        find "$REPO" -maxdepth 2 -name '*.egg-info' -user 0 -exec chown -R -h "$owner" {} +
    fi
}

# What the tests use beside Python: the Dev Containers CLI (npm) and a Compose
# implementation (Debian's docker-compose, unless Compose v2 is there).
DEVCONTAINER_CLI_VERSION=0.89.0
CHP_VERSION="$(sed -n 's/.*configurable-http-proxy@\([0-9.]*\).*/\1/p' "$REPO/labctl/incontainer/hub/requirements.txt" | head -1)"
# npm trusts only Node's own CA list; sudo drops NODE_EXTRA_CA_CERTS, so behind a proxy
# whose CA is in the system's store (update-ca-certificates) npm failed with
# SELF_SIGNED_CERT_IN_CHAIN. The system's store is what pip (/etc/pip.conf) and apt use.
npm_install() {
    NODE_EXTRA_CA_CERTS="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" \
        npm install --silent --no-fund --no-audit --prefix "$VENV/node" "$@"
}

ensure_test_tools() {
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        apt_install docker-compose
    fi
    command -v npm >/dev/null || apt_install nodejs npm
    # The save/load test starts a second, rootless engine as the test user (its own
    # data-root, exec-root and socket): rootlesskit and newuidmap.
    if ! command -v rootlesskit >/dev/null || ! command -v newuidmap >/dev/null; then
        apt_install rootlesskit uidmap
    fi
    # The push test runs a registry on 127.0.0.1 as the test user; the package's own
    # service (an open registry on :5000) is not wanted.
    if ! command -v docker-registry >/dev/null; then
        apt_install docker-registry
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
    # The remote-engine test reaches that second engine over ssh: an sshd the test user
    # starts on 127.0.0.1 with its own host key; the package's own service is not wanted.
    if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
        apt_install openssh-server openssh-client
        systemctl disable --now ssh >/dev/null 2>&1 || true
    fi
    if [ ! -x "$VENV/bin/devcontainer" ]; then
        say "installing @devcontainers/cli $DEVCONTAINER_CLI_VERSION into $VENV/node"
        npm_install \
            "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION" >/dev/null
        ln -sf "$VENV/node/node_modules/.bin/devcontainer" "$VENV/bin/devcontainer"
    fi
    # labctl hub's test runs JupyterHub, whose proxy is npm's (the version named in
    # labctl/incontainer/hub/requirements.txt).
    if [ ! -x "$VENV/bin/configurable-http-proxy" ]; then
        say "installing configurable-http-proxy $CHP_VERSION into $VENV/node"
        npm_install \
            "configurable-http-proxy@$CHP_VERSION" >/dev/null
        ln -sf "$VENV/node/node_modules/.bin/configurable-http-proxy" \
            "$VENV/bin/configurable-http-proxy"
    fi
    hand_back
}

ensure_base() {
    local image="${1:-debian:bookworm}"
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        command -v mmdebstrap >/dev/null || apt_install mmdebstrap
        say "making the base image $image"
        "$VENV/bin/labctl" base bootstrap "$image"
    fi
}
