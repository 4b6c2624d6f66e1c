#!/usr/bin/env bash
# The test command: set up a Docker engine, labctl and the base image, then run pytest.
# As root it runs the tests as an ordinary user in the docker group (labctl-test), the
# way learners use labctl, from a copy of the repository that user owns.
# Extra arguments go to pytest (--slow also builds and checks every shipped lab).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_engine
ensure_venv test
ensure_test_tools
ensure_base debian:bookworm

if is_root && [ -z "${LABCTL_TEST_AS_ROOT:-}" ]; then
    user=labctl-test
    if ! id "$user" >/dev/null 2>&1; then
        say "creating the test user $user"
        # Not uid 1000: that is the image's own lab user, and the remap must be exercised.
        uid_opt=()
        getent passwd 1234 >/dev/null || getent group 1234 >/dev/null || uid_opt=(--uid 1234)
        useradd --create-home --shell /bin/bash --user-group "${uid_opt[@]}" "$user"
    fi
    # Subordinate ids for the rootless second engine of the save/load test.
    grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 "$user"
    grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 "$user"
    getent group docker >/dev/null || groupadd docker
    usermod -aG docker "$user"
    chgrp docker /var/run/docker.sock && chmod g+rw /var/run/docker.sock
    copy=/var/tmp/labctl-test/src
    say "copying the repository to $copy for $user"
    rm -rf "$copy" && mkdir -p "$copy"
    tar -C "$REPO" --exclude=./.venv --exclude=./mylab --exclude=./data --exclude=./cache \
        --exclude=./models --exclude=./ultralytics --exclude=./work --exclude=./.labctl \
        -cf - . | tar -C "$copy" -xf -
    chown -R "$user:" /var/tmp/labctl-test
    # The system Python: an interpreter under /root (pyenv) is not usable by that user.
    py=/usr/bin/python3
    [ -x "$py" ] || apt_install python3
    "$py" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv python3-pip
    say "running the tests as $user ($(id -u "$user"):$(id -g "$user"))"
    rc=0
    runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" \
        LABCTL_PYTHON="$py" LABCTL_VENV=/var/tmp/labctl-test/venv "$copy/scripts/test.sh" \
        "$@" || rc=$?
    # The tests marked root make a second host (a network namespace with its own engine
    # and sshd); they run as root from the same copy, and run labctl as $user.
    say "running the root tests (a second Docker host in a network namespace)"
    root_rc=0
    (cd "$copy" && LABCTL_LEARNER_PYTHON=/var/tmp/labctl-test/venv/bin/python \
        "$VENV/bin/python" -m pytest -p no:cacheprovider "$@" -m root) || root_rc=$?
    [ "$root_rc" = 5 ] && root_rc=0  # none selected by the arguments
    [ "$rc" != 0 ] && exit "$rc"
    exit "$root_rc"
fi

cd "$REPO"
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
