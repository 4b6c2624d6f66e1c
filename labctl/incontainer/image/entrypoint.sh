#!/bin/bash
# labctl entrypoint: runs as root under tini, maps the lab user to the host user, then
# drops privileges. LABCTL_UID/LABCTL_GID come from `labctl run --user`; without them
# the image's own non-root `lab` user runs. LABCTL_UID=0 runs as root (a root host user,
# or rootless Docker, where container root already is the host user).
#
# Who the lab runs as must not depend on anything a spec or a learner sets: every tool is
# called by its absolute path (a spec's PATH may be anything), and when the user cannot be
# established the lab does not start - it never falls through to root. Only what is
# provably inside the image is re-owned: HOME without the mount points below it, and the
# workspace folder itself when it is on the image's own file system.
set -euo pipefail

ID=/usr/bin/id
CUT=/usr/bin/cut
GETENT=/usr/bin/getent
USERMOD=/usr/sbin/usermod
GROUPMOD=/usr/sbin/groupmod
FIND=/usr/bin/find
CHOWN=/usr/bin/chown
STAT=/usr/bin/stat
MOUNTPOINT=/usr/bin/mountpoint
SETPRIV=/usr/bin/setpriv

lab_user=lab
lab_home=/home/lab

log() { if [ -n "${LABCTL_VERBOSE:-}" ]; then echo "labctl-entrypoint: $*" >&2; fi; }
die() { echo "labctl-entrypoint: $*; not starting the lab" >&2; exit 70; }
number() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

me="$("$ID" -u)" || die "cannot run $ID"
if [ "$me" != 0 ]; then
    # Started with an explicit --user by hand: nothing to remap.
    exec "$@"
fi

uid="${LABCTL_UID:-}"
gid="${LABCTL_GID:-}"
[ -z "$uid" ] || number "$uid" || die "LABCTL_UID='$uid' is not a number"
[ -z "$gid" ] || number "$gid" || die "LABCTL_GID='$gid' is not a number"

# Mount points at or below a folder, from the kernel's own list.
mounts_under() {
    local _a _b _c _d point _rest
    while read -r _a _b _c _d point _rest; do
        case "$point" in "$1" | "$1"/*) printf '%s\n' "$point" ;; esac
    done </proc/self/mountinfo
}

if [ "$uid" = 0 ]; then
    log "running as root (host user is root, or rootless Docker)"
    export HOME=/root USER=root
    run_as=()
else
    if [ -n "$uid" ]; then
        gid="${gid:-$uid}"
        # Group: reuse a group that already has the host gid (devcontainers' rule),
        # otherwise give the lab group that gid.
        if existing_group="$("$GETENT" group "$gid" | "$CUT" -d: -f1)" && [ -n "$existing_group" ]; then
            "$USERMOD" -g "$gid" "$lab_user" || die "cannot give $lab_user the group $gid"
            log "gid $gid already exists as group '$existing_group'; lab's primary group is now it"
        else
            "$GROUPMOD" -g "$gid" "$lab_user" || die "cannot give group $lab_user the gid $gid"
        fi
        # User: if another account holds the host uid, move it aside so names stay unique.
        other="$("$GETENT" passwd "$uid" | "$CUT" -d: -f1 || true)"
        if [ -n "$other" ] && [ "$other" != "$lab_user" ]; then
            free=60000
            while "$GETENT" passwd "$free" >/dev/null; do free=$((free + 1)); done
            "$USERMOD" -u "$free" "$other" || die "cannot move '$other' off uid $uid"
            log "uid $uid belonged to '$other' in the image; moved it to $free"
        fi
        if [ "$("$ID" -u "$lab_user")" != "$uid" ]; then
            "$USERMOD" -u "$uid" "$lab_user" || die "cannot give $lab_user the uid $uid"
        fi
        [ "$("$ID" -u "$lab_user")" = "$uid" ] || die "$lab_user did not get the uid $uid"
        # HOME lives in the image: its files are re-owned, never a mount below it (-xdev
        # keeps off other file systems; the mount points themselves are pruned).
        prune=()
        while IFS= read -r point; do
            [ "$point" = "$lab_home" ] && die "$lab_home is a mount point"
            prune+=(-path "$point" -prune -o)
        done < <(mounts_under "$lab_home")
        "$FIND" "$lab_home" -xdev "${prune[@]}" -exec "$CHOWN" -h "$uid:$gid" {} + \
            || die "cannot give $lab_home to $uid:$gid"
        # The workspace folder itself (not recursive), so Jupyter can create files there,
        # when it is the image's own folder: not a mount, on the root file system.
        ws="${LABCTL_WORKSPACE:-/workspace}"
        if [ -d "$ws" ] && ! "$MOUNTPOINT" -q "$ws" \
            && [ "$("$STAT" -c %d "$ws")" = "$("$STAT" -c %d /)" ]; then
            "$CHOWN" "$uid:$gid" "$ws"
        fi
        log "running as $lab_user ($uid:$gid)"
    fi
    lab_gid="$("$ID" -g "$lab_user")" || die "no user $lab_user in the image"
    export HOME="$lab_home" USER="$lab_user"
    run_as=("$SETPRIV" --reuid="$lab_user" --regid="$lab_gid" --init-groups --)
fi

# Per-image start-up hooks (e.g. Ultralytics settings), run as the lab user.
for hook in /opt/labctl/lib/hooks/*.sh; do
    [ -e "$hook" ] || continue
    "${run_as[@]}" /bin/bash "$hook" || echo "labctl-entrypoint: hook $hook failed (continuing)" >&2
done

exec "${run_as[@]}" "$@"
