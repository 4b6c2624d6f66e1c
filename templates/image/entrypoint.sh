#!/bin/bash
# labctl entrypoint: runs as root under tini, maps the lab user to the host user, then
# drops privileges. LABCTL_UID/LABCTL_GID come from `labctl run --user`; without them
# the image's own non-root `lab` user runs. LABCTL_UID=0 runs as root (a root host user,
# or rootless Docker, where container root already is the host user).
set -euo pipefail

lab_user=lab
lab_home=/home/lab

log() { if [ -n "${LABCTL_VERBOSE:-}" ]; then echo "labctl-entrypoint: $*" >&2; fi; }

if [ "$(id -u)" != 0 ]; then
    # Started with an explicit --user by hand: nothing to remap.
    exec "$@"
fi

uid="${LABCTL_UID:-}"
gid="${LABCTL_GID:-}"

if [ "$uid" = 0 ]; then
    log "running as root (host user is root, or rootless Docker)"
    export HOME=/root USER=root
    run_as=()
else
    if [ -n "$uid" ]; then
        gid="${gid:-$uid}"
        # Group: reuse a group that already has the host gid (devcontainers' rule),
        # otherwise give the lab group that gid.
        if existing_group="$(getent group "$gid" | cut -d: -f1)" && [ -n "$existing_group" ]; then
            usermod -g "$gid" "$lab_user"
            log "gid $gid already exists as group '$existing_group'; lab's primary group is now it"
        else
            groupmod -g "$gid" "$lab_user"
        fi
        # User: if another account holds the host uid, move it aside so names stay unique.
        other="$(getent passwd "$uid" | cut -d: -f1 || true)"
        if [ -n "$other" ] && [ "$other" != "$lab_user" ]; then
            free=60000
            while getent passwd "$free" >/dev/null; do free=$((free + 1)); done
            usermod -u "$free" "$other"
            log "uid $uid belonged to '$other' in the image; moved it to $free"
        fi
        if [ "$(id -u "$lab_user")" != "$uid" ]; then
            usermod -u "$uid" "$lab_user"
        fi
        # HOME lives in the image, not on a mount: -xdev keeps chown off bind mounts.
        find "$lab_home" -xdev -exec chown -h "$uid:$gid" {} +
        # The workspace root itself (not a mount, not recursive) so Jupyter can create files.
        ws="${LABCTL_WORKSPACE:-/workspace}"
        if [ -d "$ws" ] && ! mountpoint -q "$ws"; then chown "$uid:$gid" "$ws"; fi
        log "running as $lab_user ($uid:$gid)"
    fi
    export HOME="$lab_home" USER="$lab_user"
    run_as=(setpriv --reuid="$lab_user" --regid="$(id -g "$lab_user")" --init-groups --)
fi

# Per-image start-up hooks (e.g. Ultralytics settings), run as the lab user.
for hook in /opt/labctl/lib/hooks/*.sh; do
    [ -e "$hook" ] || continue
    "${run_as[@]}" bash "$hook" || echo "labctl-entrypoint: hook $hook failed (continuing)" >&2
done

exec "${run_as[@]}" "$@"
